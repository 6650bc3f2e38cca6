//! The daemon in-process: an md fixture tree changes between polls, the model turns it into
//! events, and every sink gets them in order with the model after them (the Sink contract).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use postern_hwmon::collectors::mdraid::MdraidCollector;
use postern_hwmon::collectors::{Collector, CollectorContext};
use postern_hwmon::config::MdraidConfig;
use postern_hwmon::daemon;
use postern_hwmon::model::{Event, Snapshot, State};
use postern_hwmon::sinks::Sink;

struct Recorder(mpsc::Sender<(Event, Snapshot)>, mpsc::Sender<usize>);

impl Sink for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn event(&mut self, event: &Event, snapshot: &Snapshot) {
        let _ = self.0.send((event.clone(), snapshot.clone()));
    }
    fn snapshot(&mut self, snapshot: &Snapshot) {
        let _ = self.1.send(snapshot.components.len());
    }
}

fn recorded(scenario: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/hwmon/fixtures/recorded/md")
        .join(scenario)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let ty = e.file_type().unwrap();
        let dest = to.join(e.file_name());
        if ty.is_dir() {
            copy_tree(&e.path(), &dest);
        } else if ty.is_symlink() {
            let target = std::fs::read_link(e.path()).unwrap();
            let _ = std::fs::remove_file(&dest);
            std::os::unix::fs::symlink(target, dest).unwrap();
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn set_scenario(root: &Path, scenario: &str) {
    let src = recorded(scenario);
    let md = root.join("sys/block/md0/md");
    let _ = std::fs::remove_dir_all(&md);
    copy_tree(&src.join("sys/block/md0/md"), &md);
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::copy(src.join("proc/mdstat"), root.join("proc/mdstat")).unwrap();
}

#[test]
fn degrade_reaches_every_sink_within_a_poll() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    set_scenario(root, "healthy");
    let config = MdraidConfig {
        proc_root: root.join("proc"),
        sys_root: root.join("sys"),
        command: Vec::new(),
        ..MdraidConfig::default()
    };
    let interval = Duration::from_millis(100);
    let collector = MdraidCollector::new(&config, interval, &CollectorContext::default());
    let (etx, erx) = mpsc::channel();
    let (stx, srx) = mpsc::channel();
    let collectors: Vec<Box<dyn Collector>> = vec![Box::new(collector)];
    let running = daemon::start_with(collectors, vec![Box::new(Recorder(etx, stx))], 8).unwrap();
    assert!(running.wait_ready(Duration::from_secs(10)));
    assert_eq!(srx.recv_timeout(Duration::from_secs(10)).unwrap(), 1);
    let snap = running.shared.snapshot();
    assert_eq!(snap.component("array/md0").unwrap().state, State::Ok);
    assert!(erx.try_recv().is_err(), "no events while healthy");

    set_scenario(root, "degraded");
    let mut names = Vec::new();
    let (last, after) = loop {
        let (e, s) = erx
            .recv_timeout(Duration::from_secs(10))
            .expect("degrade event");
        names.push(e.name.clone());
        if e.name == "StateChanged" {
            break (e, s);
        }
    };
    assert_eq!(names, vec!["DegradedArray", "Fail", "StateChanged"]);
    assert_eq!((last.from, last.to), (State::Ok, State::Critical));
    assert_eq!(after.component("array/md0").unwrap().state, State::Critical);
    assert!(after.storage.safe);

    // Both members faulty: the array failed (still CRITICAL, so no transition), storage unsafe.
    set_scenario(root, "failed");
    let mut names = Vec::new();
    let mut last = None;
    while names.len() < 2 {
        let (e, s) = erx
            .recv_timeout(Duration::from_secs(10))
            .expect("failed events");
        names.push(e.name);
        last = Some(s);
    }
    assert_eq!(names, vec!["DegradedArray", "Fail"]);
    let s = last.unwrap();
    assert!(!s.storage.safe, "{:?}", s.storage);
    running.shutdown();
}
