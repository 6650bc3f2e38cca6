//! Networking: loopback up; eth0 by DHCP with busybox udhcpc when the rootfs has it (QEMU
//! user networking answers DHCP), else a static address from /persist/etc/postern/network.toml
//! (`address = "192.0.2.10/24"`, `gateway = "192.0.2.1"`). udhcpc runs supervised with this
//! binary as its script (`postern-init udhcpc-script ACTION`, reached through a symlink).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::children::run;

pub const RESOLV_CONF: &str = "/run/postern/resolv.conf";
pub const UDHCPC_SCRIPT_LINK: &str = "/run/postern/udhcpc.script";
const IP_TIMEOUT: Duration = Duration::from_secs(10);

fn ip(args: &[&str]) -> Result<()> {
    let mut argv = vec!["ip"];
    argv.extend_from_slice(args);
    let out = run(&argv, IP_TIMEOUT)?;
    if !out.success() {
        bail!("ip {}: {}", args.join(" "), out.message());
    }
    Ok(())
}

/// Prefix length of a dotted netmask (255.255.255.0 -> 24); None when not contiguous.
pub fn prefix_len(mask: &str) -> Option<u32> {
    let addr: std::net::Ipv4Addr = mask.parse().ok()?;
    let bits = u32::from(addr);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones)
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticConfig {
    address: String,
    #[serde(default)]
    gateway: String,
}

pub fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.exists())
}

/// Brings up lo and eth0; the udhcpc argv to supervise when DHCP is to be used.
pub fn bring_up(static_config: &Path) -> Option<Vec<String>> {
    if let Err(error) = ip(&["link", "set", "lo", "up"]) {
        crate::console::say(&format!("{error:#}"));
    }
    if !Path::new("/sys/class/net/eth0").exists() {
        crate::console::say("no eth0");
        return None;
    }
    if let Err(error) = ip(&["link", "set", "eth0", "up"]) {
        crate::console::say(&format!("{error:#}"));
    }
    if let Ok(text) = std::fs::read_to_string(static_config) {
        match toml::from_str::<StaticConfig>(&text) {
            Ok(config) => {
                let mut result = ip(&["addr", "add", &config.address, "dev", "eth0"]);
                if result.is_ok() && !config.gateway.is_empty() {
                    result = ip(&["route", "add", "default", "via", &config.gateway]);
                }
                match result {
                    Ok(()) => crate::console::say(&format!("eth0 {} (static)", config.address)),
                    Err(error) => crate::console::say(&format!("eth0: {error:#}")),
                }
                return None;
            }
            Err(error) => {
                crate::console::say(&format!("{}: {error}; using DHCP", static_config.display()))
            }
        }
    }
    if which("udhcpc").is_none() {
        crate::console::say("eth0: no udhcpc and no static configuration: eth0 has no address");
        return None;
    }
    let _ = std::fs::remove_file(UDHCPC_SCRIPT_LINK);
    let own = std::env::current_exe().unwrap_or_else(|_| "/sbin/init".into());
    if let Err(error) = std::os::unix::fs::symlink(own, UDHCPC_SCRIPT_LINK) {
        crate::console::say(&format!("{UDHCPC_SCRIPT_LINK}: {error}"));
        return None;
    }
    Some(
        [
            "udhcpc",
            "-f",
            "-i",
            "eth0",
            "-s",
            UDHCPC_SCRIPT_LINK,
            "-t",
            "10",
            "-T",
            "3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
}

/// What the script does for one udhcpc event, as `ip` argument lists (pure: tested).
pub fn script_actions(action: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<Vec<String>> {
    let interface = env("interface").unwrap_or_else(|| "eth0".into());
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    match action {
        "deconfig" => vec![words(&format!("addr flush dev {interface}"))],
        "bound" | "renew" => {
            let Some(address) = env("ip") else {
                return Vec::new();
            };
            let prefix = env("mask")
                .and_then(|m| m.parse::<u32>().ok())
                .or_else(|| env("subnet").and_then(|s| prefix_len(&s)))
                .unwrap_or(24);
            let mut actions = vec![
                words(&format!("addr flush dev {interface}")),
                words(&format!("addr add {address}/{prefix} dev {interface}")),
            ];
            if let Some(router) =
                env("router").and_then(|r| r.split_whitespace().next().map(str::to_string))
            {
                actions.push(words(&format!(
                    "route add default via {router} dev {interface}"
                )));
            }
            actions
        }
        _ => Vec::new(),
    }
}

/// `postern-init udhcpc-script ACTION` (udhcpc runs it through the symlink).
pub fn udhcpc_script(action: &str) -> Result<()> {
    let env = |name: &str| std::env::var(name).ok();
    for args in script_actions(action, &env) {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        ip(&argv)?;
    }
    if action == "bound" || action == "renew" {
        let mut resolv = String::new();
        if let Some(domain) = env("domain") {
            resolv.push_str(&format!("search {domain}\n"));
        }
        for server in env("dns").unwrap_or_default().split_whitespace() {
            resolv.push_str(&format!("nameserver {server}\n"));
        }
        let _ = std::fs::write(RESOLV_CONF, resolv);
        println!("eth0 {} via DHCP", env("ip").unwrap_or_default());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(prefix_len("255.255.255.0"), Some(24));
        assert_eq!(prefix_len("255.255.252.0"), Some(22));
        assert_eq!(prefix_len("0.0.0.0"), Some(0));
        assert_eq!(prefix_len("255.255.255.255"), Some(32));
        assert_eq!(prefix_len("255.0.255.0"), None);
        assert_eq!(prefix_len("nope"), None);
    }

    #[test]
    fn bound_configures_address_and_route() {
        let env = |name: &str| match name {
            "interface" => Some("eth0".to_string()),
            "ip" => Some("10.0.2.15".to_string()),
            "subnet" => Some("255.255.255.0".to_string()),
            "router" => Some("10.0.2.2 10.0.2.3".to_string()),
            _ => None,
        };
        let actions: Vec<String> = script_actions("bound", &env)
            .iter()
            .map(|a| a.join(" "))
            .collect();
        assert_eq!(
            actions,
            [
                "addr flush dev eth0",
                "addr add 10.0.2.15/24 dev eth0",
                "route add default via 10.0.2.2 dev eth0"
            ]
        );
        assert_eq!(script_actions("leasefail", &env), Vec::<Vec<String>>::new());
        assert_eq!(script_actions("deconfig", &env).len(), 1);
    }
}
