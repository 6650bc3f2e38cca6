//! Stage 2, `/sbin/init` on the system slot: the appliance's PID 1 for the rest of the boot.
//! Order: pseudo filesystems, /persist, log ring, watchdog, boot record, factory reset if
//! asked, data array and filesystem, first-boot provisioning, network, supervised services,
//! then the main loop (watchdog feeding, restarts, health check and marking the slot good,
//! control socket, power button, signals) until a shutdown.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::boot_record::{Outcome, Recorder, WATCHDOG_STOP_TEST};
use crate::cmdline::{KernelArgs, Slot};
use crate::console::say;
use crate::control::{self, Envelope, Request};
use crate::md;
use crate::mounts;
use crate::paths;
use crate::plan::InitPlan;
use crate::shutdown::{reboot_now, Action};
use crate::supervise::{ExitNotify, Service, Supervisor};
use crate::watchdog::{self, Watchdog};

const PERSIST_WAIT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(15);
const PAUSE_BEFORE_FAILURE_REBOOT: Duration = Duration::from_secs(10);
const SIGNALS: [i32; 5] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGHUP,
];

enum Event {
    Tick,
    ServiceExited(String, i32),
    Healthy,
    Control(Envelope),
    PowerButton,
    Signal(i32),
}

type Sender = Arc<Mutex<mpsc::Sender<Event>>>;

fn send(sender: &Sender, event: Event) {
    let _ = sender.lock().unwrap_or_else(|p| p.into_inner()).send(event);
}

struct Boot {
    args: KernelArgs,
    slot: Option<Slot>,
    plan: InitPlan,
    recorder: Option<Recorder>,
    watchdog: Option<Arc<Mutex<Watchdog>>>,
    /// Fed by a thread during the long setup steps; the main loop feeds it afterwards.
    setup_feeding: Arc<AtomicBool>,
    watchdog_stopped: bool,
    data_mounted: Option<PathBuf>,
    persist_mounted: bool,
    marked_good: bool,
    healthy: bool,
}

impl Boot {
    fn milestone(&mut self, name: &str, detail: &str) {
        if let Some(recorder) = self.recorder.as_mut() {
            if let Err(error) = recorder.milestone(name, detail) {
                say(&format!("cannot write the boot record: {error:#}"));
            }
        }
        if detail.is_empty() {
            say(&format!("milestone {name}"));
        } else {
            say(&format!("milestone {name}: {detail}"));
        }
    }

    fn end_record(&mut self, outcome: Outcome, reason: &str) {
        if let Some(recorder) = self.recorder.as_mut() {
            if let Err(error) = recorder.end(outcome, reason) {
                say(&format!("cannot write the boot record: {error:#}"));
            }
        }
    }

    fn feed(&self) {
        if self.watchdog_stopped {
            return;
        }
        if let Some(wd) = &self.watchdog {
            if let Err(error) = wd.lock().unwrap_or_else(|p| p.into_inner()).feed() {
                say(&format!("{error:#}"));
            }
        }
    }
}

fn block_signals() {
    // SAFETY: a sigset we own, set for this (the main, and so every later) thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn wait_for_signals(sender: Sender) {
    loop {
        let mut signal = 0;
        // SAFETY: as above; sigwait writes the signal number.
        let rc = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in SIGNALS {
                libc::sigaddset(&mut set, s);
            }
            libc::sigwait(&set, &mut signal)
        };
        if rc == 0 {
            send(&sender, Event::Signal(signal));
        }
    }
}

fn set_hostname(name: &str) {
    // SAFETY: pointer and length of a string we own.
    if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
        say(&format!("sethostname: {}", std::io::Error::last_os_error()));
    }
}

fn mount_pseudo_filesystems() -> Result<()> {
    mounts::mount_pseudo("proc", "/proc", "")?;
    mounts::mount_pseudo("sysfs", "/sys", "")?;
    mounts::mount_pseudo("devtmpfs", "/dev", "mode=0755")?;
    let _ = std::fs::create_dir_all("/dev/pts");
    mounts::mount_pseudo("devpts", "/dev/pts", "gid=5,mode=620,ptmxmode=0666")?;
    mounts::mount_pseudo("tmpfs", "/run", "mode=0755")?;
    mounts::mount_pseudo("tmpfs", "/tmp", "mode=1777")?;
    std::fs::create_dir_all(paths::RUN_DIR).context("creating /run/postern")?;
    Ok(())
}

fn mount_persist() -> Result<()> {
    let Some(device) = mounts::wait_for_partition("persist", PERSIST_WAIT) else {
        bail!("no partition labelled persist");
    };
    let dev = device.display().to_string();
    if !mounts::has_ext_superblock(&device)? {
        say(&format!("{dev} has no filesystem: first boot, making ext4"));
        let out = crate::children::run(
            &["mke2fs", "-F", "-q", "-t", "ext4", "-L", "persist", &dev],
            Duration::from_secs(600),
        )?;
        if !out.success() {
            bail!("mke2fs {dev}: {}", out.message());
        }
    } else {
        let out = crate::children::run(&["e2fsck", "-p", &dev], Duration::from_secs(600))?;
        if md::fsck_left_errors(out.code) {
            say(&format!(
                "e2fsck -p {dev}: code {}; running e2fsck -fy",
                out.code
            ));
            let _ = crate::children::run(&["e2fsck", "-fy", &dev], Duration::from_secs(600));
        }
    }
    mounts::mount(
        &dev,
        Path::new(paths::PERSIST),
        "ext4",
        libc::MS_NOATIME | libc::MS_NODEV | libc::MS_NOSUID,
        "",
    )
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Mounts the ESP, applies `change` to EFI/BOOT/grubenv, unmounts.
fn with_grubenv(
    change: impl FnOnce(&mut crate::grubenv::GrubEnv) -> Result<()>,
) -> Result<crate::grubenv::GrubEnv> {
    let Some(device) = mounts::find_partition(Path::new("/sys"), "efi") else {
        bail!("no partition labelled efi");
    };
    let esp = Path::new(paths::ESP_MOUNT);
    mounts::mount(&device.display().to_string(), esp, "vfat", 0, "")?;
    let result = crate::grubenv::update(&esp.join(paths::GRUBENV_ON_ESP), change);
    // SAFETY: sync takes nothing.
    unsafe { libc::sync() };
    if let Err(error) = mounts::unmount(esp) {
        say(&format!("{error:#}"));
    }
    result
}

fn factory_reset(boot: &mut Boot) -> Result<()> {
    boot.milestone(
        "factory-reset",
        "wiping the data array and the provisioning state",
    );
    if let Some(array) = &boot.plan.data_array {
        md::wipe(array)?;
    }
    crate::provision::wipe_persist_state()?;
    let _ = std::fs::remove_file(paths::FACTORY_RESET_MARKER);
    if boot.args.factory_reset {
        // A kernel argument set through grubenv would reset every boot: clear it there.
        let word = "postern.factory_reset=1";
        let cleared = with_grubenv(|env| {
            if let Some(extra) = env.get("EXTRA_CMDLINE").map(str::to_string) {
                env.set("EXTRA_CMDLINE", &crate::cmdline::without_word(&extra, word))?;
            }
            Ok(())
        });
        if let Err(error) = cleared {
            say(&format!("cannot clear {word} from grubenv: {error:#}"));
        }
    }
    boot.milestone("factory-reset-done", "");
    Ok(())
}

fn prepare_data(boot: &mut Boot) -> Result<()> {
    let Some(array) = boot.plan.data_array.clone() else {
        // The slot is read-only: without an array the store lives on /persist.
        let store = Path::new(paths::PERSIST).join("data");
        std::fs::create_dir_all(&store).with_context(|| format!("creating {}", store.display()))?;
        mounts::mount(
            &store.display().to_string(),
            Path::new(paths::DATA_MOUNT),
            "",
            libc::MS_BIND,
            "",
        )?;
        boot.data_mounted = Some(PathBuf::from(paths::DATA_MOUNT));
        boot.milestone(
            "data-mounted",
            "no data array in the board file: /persist/data",
        );
        return Ok(());
    };
    let state = md::ensure_array(&array)?;
    let created = state == md::ArrayState::Created;
    boot.milestone(
        "array-ready",
        &format!("{} {state:?}", array.md_device.display()),
    );
    if created || !mounts::has_ext_superblock(&array.md_device)? {
        say(&format!("making ext4 on {}", array.md_device.display()));
        md::make_filesystem(&array)?;
        boot.milestone("data-mkfs", "");
    } else {
        match md::check_filesystem(&array.md_device)? {
            md::FsckResult::Clean => {}
            result => boot.milestone("data-fsck-repaired", &format!("{result:?}")),
        }
    }
    mounts::mount(
        &array.md_device.display().to_string(),
        &array.mount,
        "ext4",
        libc::MS_NOATIME | libc::MS_NODEV | libc::MS_NOSUID,
        "",
    )?;
    boot.data_mounted = Some(array.mount.clone());
    boot.milestone("data-mounted", &array.mount.display().to_string());
    Ok(())
}

/// posternd answers `220 ` on 127.0.0.1:25 (its store is open before it binds a listener).
fn smtp_banner_ok() -> bool {
    use std::net::{SocketAddr, TcpStream};
    let address = SocketAddr::from(([127, 0, 0, 1], 25));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut banner = [0u8; 4];
    stream.read_exact(&mut banner).is_ok() && &banner == b"220 "
}

fn start_threads(boot: &Boot, sender: &Sender) {
    let signals = sender.clone();
    std::thread::spawn(move || wait_for_signals(signals));

    let ticks = sender.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1));
        send(&ticks, Event::Tick);
    });

    match control::bind(Path::new(paths::CONTROL_SOCKET)) {
        Ok(listener) => {
            let requests = sender.clone();
            std::thread::spawn(move || {
                control::serve(listener, move |envelope| {
                    send(&requests, Event::Control(envelope))
                })
            });
        }
        Err(error) => say(&format!("control socket: {error:#}")),
    }

    let buttons = crate::power_button::find_devices(Path::new("/sys"), "Power Button");
    if buttons.is_empty() {
        say("no ACPI power button found");
    }
    for device in buttons {
        let presses = sender.clone();
        say(&format!("power button: {}", device.display()));
        std::thread::spawn(move || {
            crate::power_button::watch(&device, || send(&presses, Event::PowerButton))
        });
    }

    if boot.args.test {
        let limit = boot.args.cmd_timeout;
        std::thread::spawn(move || {
            // The port appears once virtio_console has probed.
            for _ in 0..100 {
                if let Some(port) =
                    crate::cmd_channel::port_device(Path::new("/sys"), paths::CMD_PORT_NAME)
                {
                    say(&format!("test command channel on {}", port.display()));
                    crate::cmd_channel::serve(&port, limit);
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            say("postern.test=1 but no org.postern.cmd port");
        });
    }

    let health = sender.clone();
    std::thread::spawn(move || loop {
        if smtp_banner_ok() {
            send(&health, Event::Healthy);
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    });
}

fn start_setup_feeder(boot: &Boot) {
    let Some(wd) = boot.watchdog.clone() else {
        return;
    };
    let feeding = boot.setup_feeding.clone();
    let interval = Duration::from_secs(watchdog::feed_interval_secs(
        wd.lock().unwrap_or_else(|p| p.into_inner()).timeout_secs,
    ));
    std::thread::spawn(move || {
        while feeding.load(Ordering::SeqCst) {
            let _ = wd.lock().unwrap_or_else(|p| p.into_inner()).feed();
            std::thread::sleep(interval.min(Duration::from_secs(1)));
        }
    });
}

fn services(network: Option<Vec<String>>) -> Vec<Service> {
    let mut services = Vec::new();
    if let Some(udhcpc) = network {
        let argv: Vec<&str> = udhcpc.iter().map(String::as_str).collect();
        services.push(Service::new("udhcpc", &argv));
    }
    if Path::new(paths::HWMOND).exists() {
        services.push(Service::new(
            "hwmond",
            &[paths::HWMOND, "--config", paths::HWMOND_CONFIG],
        ));
    } else {
        say(&format!("no {}: hwmond not started", paths::HWMOND));
    }
    services.push(Service::new(
        "posternd",
        &[paths::POSTERND, "--config", paths::POSTERND_CONFIG],
    ));
    services
}

fn status_json(boot: &Boot, supervisor: &Supervisor) -> String {
    let record = boot.recorder.as_ref().map(|r| &r.record);
    serde_json::json!({
        "ok": true,
        "slot": boot.slot.map(|s| s.letter()),
        "boot": record.map(|r| r.boot),
        "milestones": record.map(|r| r.milestones.iter().map(|m| m.name.clone()).collect::<Vec<_>>()),
        "healthy": boot.healthy,
        "marked_good": boot.marked_good,
        "test": boot.args.test,
        "watchdog": {
            "present": boot.watchdog.is_some(),
            "feeding": boot.watchdog.is_some() && !boot.watchdog_stopped,
        },
        "services": supervisor.status_json(),
    })
    .to_string()
}

fn mark_good(boot: &mut Boot) {
    let Some(slot) = boot.slot else {
        say("no postern.slot on the command line: not marking any slot good");
        return;
    };
    let letter = slot.letter();
    let result = with_grubenv(|env| {
        env.set(&format!("{letter}_OK"), "1")?;
        env.set(&format!("{letter}_TRY"), "0")
    });
    match result {
        Ok(_) => {
            boot.marked_good = true;
            boot.milestone("marked-good", letter);
            say(&format!("slot {letter} marked good"));
        }
        Err(error) => {
            boot.milestone("mark-good-failed", &format!("{error:#}"));
        }
    }
}

/// Stops everything and ends the boot.
fn finish(
    boot: &mut Boot,
    supervisor: &mut Supervisor,
    action: Action,
    outcome: Outcome,
    reason: &str,
) -> ! {
    boot.milestone("shutdown-requested", reason);
    boot.setup_feeding.store(false, Ordering::SeqCst);
    supervisor.stop_all(STOP_GRACE);
    // SAFETY: sync takes nothing.
    unsafe { libc::sync() };
    if let Some(mount) = boot.data_mounted.take() {
        if let Err(error) = mounts::unmount(&mount) {
            say(&format!("{error:#}; remounting read-only"));
            let _ = mounts::remount_read_only(&mount);
        }
    }
    if let Some(array) = &boot.plan.data_array {
        md::stop(array);
    }
    boot.end_record(outcome, reason);
    crate::console::detach_ring();
    if boot.persist_mounted {
        let persist = Path::new(paths::PERSIST);
        if let Err(error) = mounts::unmount(persist) {
            say(&format!("{error:#}; remounting read-only"));
            let _ = mounts::remount_read_only(persist);
        }
    }
    if let Some(wd) = &boot.watchdog {
        if let Err(error) = wd.lock().unwrap_or_else(|p| p.into_inner()).magic_close() {
            say(&format!("{error:#}"));
        }
    }
    say(&format!(
        "{}: {reason}",
        match action {
            Action::Reboot => "rebooting",
            Action::Poweroff => "powering off",
        }
    ));
    reboot_now(action.reboot_command())
}

fn fail(boot: &mut Boot, supervisor: &mut Supervisor, reason: &str) -> ! {
    say(&format!("BOOT FAILED: {reason}"));
    say(&format!(
        "rebooting in {} s (GRUB counts this try and falls back to the other slot after 3)",
        PAUSE_BEFORE_FAILURE_REBOOT.as_secs()
    ));
    std::thread::sleep(PAUSE_BEFORE_FAILURE_REBOOT);
    finish(boot, supervisor, Action::Reboot, Outcome::Failed, reason)
}

fn run(
    boot: &mut Boot,
    supervisor: &mut Supervisor,
    sender: Sender,
    events: mpsc::Receiver<Event>,
) -> ! {
    if let Err(error) = mount_persist() {
        fail(boot, supervisor, &format!("/persist: {error:#}"));
    }
    boot.persist_mounted = true;
    match crate::log_ring::LogRing::open(Path::new(paths::LOG_RING)) {
        Ok(ring) => crate::console::attach_ring(ring),
        Err(error) => say(&format!("log ring: {error:#}")),
    }
    if let Some(plan) = boot.plan.watchdog.clone() {
        if plan.device.exists() {
            match Watchdog::open(&plan.device, plan.timeout_secs) {
                Ok(wd) => {
                    say(&format!(
                        "watchdog {} armed ({} s)",
                        plan.device.display(),
                        wd.timeout_secs
                    ));
                    boot.watchdog = Some(Arc::new(Mutex::new(wd)));
                }
                Err(error) => say(&format!("watchdog: {error:#}")),
            }
        } else {
            say(&format!("no watchdog at {}", plan.device.display()));
        }
    }
    start_setup_feeder(boot);
    let card_reset = boot
        .watchdog
        .as_ref()
        .is_some_and(|wd| wd.lock().unwrap_or_else(|p| p.into_inner()).card_reset());
    let slot = boot.slot.map(|s| s.letter()).unwrap_or("?");
    match Recorder::start(
        Path::new(paths::BOOT_RECORDS),
        &boot_id(),
        slot,
        &boot.args.raw,
        card_reset,
    ) {
        Ok((recorder, previous)) => {
            if let Some(previous) = previous {
                say(&format!(
                    "previous {}",
                    crate::boot_record::describe(&previous)
                ));
            }
            boot.recorder = Some(recorder);
        }
        Err(error) => say(&format!("boot record: {error:#}")),
    }
    boot.milestone("persist-mounted", "");

    if boot.args.factory_reset || Path::new(paths::FACTORY_RESET_MARKER).exists() {
        if let Err(error) = factory_reset(boot) {
            fail(boot, supervisor, &format!("factory reset: {error:#}"));
        }
    }
    if let Err(error) = std::fs::create_dir_all(paths::PERSIST_ETC) {
        say(&format!("creating {}: {error}", paths::PERSIST_ETC));
    }
    if let Err(error) = prepare_data(boot) {
        fail(boot, supervisor, &format!("data array: {error:#}"));
    }
    if !crate::provision::is_provisioned() {
        say("first boot: provisioning");
        if let Err(error) = crate::provision::provision(&boot.plan, boot.args.test) {
            fail(boot, supervisor, &format!("provisioning: {error:#}"));
        }
        boot.milestone("provisioned", &boot.plan.domain.clone());
    }
    let network = crate::network::bring_up(&Path::new(paths::PERSIST_ETC).join("network.toml"));
    supervisor.services = services(network);
    start_threads(boot, &sender);
    boot.setup_feeding.store(false, Ordering::SeqCst);
    boot.milestone("services-starting", "");

    let feed_every = Duration::from_secs(
        boot.watchdog
            .as_ref()
            .map(|wd| {
                watchdog::feed_interval_secs(
                    wd.lock().unwrap_or_else(|p| p.into_inner()).timeout_secs,
                )
            })
            .unwrap_or(1),
    );
    let mut last_feed = Instant::now();
    let health_deadline = Instant::now() + boot.args.health_timeout;
    boot.feed();
    loop {
        let event = events
            .recv_timeout(Duration::from_secs(1))
            .unwrap_or(Event::Tick);
        let now = Instant::now();
        if now.duration_since(last_feed) >= feed_every {
            boot.feed();
            last_feed = now;
        }
        match event {
            Event::Tick => {}
            Event::ServiceExited(name, status) => supervisor.on_exit(&name, status, now),
            Event::Healthy => {
                boot.healthy = true;
                boot.milestone("posternd-healthy", "");
                mark_good(boot);
            }
            Event::PowerButton => finish(
                boot,
                supervisor,
                Action::Poweroff,
                Outcome::CleanShutdown,
                "power button",
            ),
            Event::Signal(signal) => match Action::for_signal(signal) {
                Some(action) => finish(
                    boot,
                    supervisor,
                    action,
                    Outcome::CleanShutdown,
                    &format!("signal {signal}"),
                ),
                None => say(&format!("signal {signal} ignored")),
            },
            Event::Control(envelope) => {
                let reply = |text: String| {
                    let _ = envelope.reply.send(text);
                };
                match envelope.request {
                    Request::Status => reply(status_json(boot, supervisor)),
                    Request::Reboot => {
                        reply(control::ok_reply());
                        finish(
                            boot,
                            supervisor,
                            Action::Reboot,
                            Outcome::CleanShutdown,
                            "reboot requested",
                        );
                    }
                    Request::Poweroff => {
                        reply(control::ok_reply());
                        finish(
                            boot,
                            supervisor,
                            Action::Poweroff,
                            Outcome::CleanShutdown,
                            "poweroff requested",
                        );
                    }
                    Request::FactoryReset => {
                        match crate::boot_record::write_durably(
                            Path::new(paths::FACTORY_RESET_MARKER),
                            format!("{}\n", crate::boot_record::now_epoch()).as_bytes(),
                        ) {
                            Ok(()) => {
                                reply(control::ok_reply());
                                finish(
                                    boot,
                                    supervisor,
                                    Action::Reboot,
                                    Outcome::FactoryReset,
                                    "factory reset requested",
                                );
                            }
                            Err(error) => reply(control::error_reply(&format!("{error:#}"))),
                        }
                    }
                    Request::TestStopWatchdog => {
                        if !boot.args.test {
                            reply(control::error_reply("only with postern.test=1"));
                        } else if boot.watchdog.is_none() {
                            reply(control::error_reply("no watchdog"));
                        } else {
                            boot.milestone(WATCHDOG_STOP_TEST, "feeding stopped on request");
                            crate::console::sync_ring();
                            boot.watchdog_stopped = true;
                            reply(control::ok_reply());
                        }
                    }
                }
            }
        }
        supervisor.tick(now);
        if !boot.healthy && now >= health_deadline {
            let reason = format!(
                "posternd did not pass its health check (220 on 127.0.0.1:25) within {} s",
                boot.args.health_timeout.as_secs()
            );
            fail(boot, supervisor, &reason);
        }
    }
}

pub fn main() -> ! {
    std::env::set_var("PATH", "/sbin:/bin:/usr/sbin:/usr/bin");
    std::env::set_var("HOME", "/");
    // SAFETY: umask and reboot(RB_DISABLE_CAD) (Ctrl-Alt-Del becomes SIGINT to us) take no pointers.
    unsafe {
        libc::umask(0o022);
        libc::reboot(libc::RB_DISABLE_CAD);
    }
    block_signals();
    if let Err(error) = mount_pseudo_filesystems() {
        say(&format!("{error:#}"));
    }
    let args = KernelArgs::from_proc();
    let plan = match InitPlan::load(Path::new(paths::BOARD_FILE)) {
        Ok(plan) => plan,
        Err(error) => {
            say(&format!(
                "board file: {error:#}; running without a data array"
            ));
            InitPlan::without_board()
        }
    };
    set_hostname(&plan.hostname);
    say(&format!(
        "stage 2 on slot {}{}",
        args.slot.map(|s| s.letter()).unwrap_or("?"),
        if args.test { " (test mode)" } else { "" }
    ));
    let (tx, rx) = mpsc::channel();
    let sender: Sender = Arc::new(Mutex::new(tx));
    let exits = sender.clone();
    let notify: ExitNotify = Arc::new(move |name: &str, _pid, status| {
        send(&exits, Event::ServiceExited(name.to_string(), status))
    });
    let mut boot = Boot {
        slot: args.slot,
        args,
        plan,
        recorder: None,
        watchdog: None,
        setup_feeding: Arc::new(AtomicBool::new(true)),
        watchdog_stopped: false,
        data_mounted: None,
        persist_mounted: false,
        marked_good: false,
        healthy: false,
    };
    let mut supervisor = Supervisor::new(Vec::new(), notify);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(&mut boot, &mut supervisor, sender, rx)
    }));
    // Only a panic gets here (run never returns): PID 1 must not exit.
    let _ = outcome;
    say("BOOT FAILED: the init panicked; rebooting in 10 s");
    std::thread::sleep(PAUSE_BEFORE_FAILURE_REBOOT);
    reboot_now(libc::RB_AUTOBOOT)
}
