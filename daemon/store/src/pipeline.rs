//! Commit pipelining on io_uring: while batch N's fdatasync is in flight, the shard thread
//! already writes batch N+1 behind it, so a busy shard does not leave the disk idle between
//! an fdatasync and the next write. Batches are still answered strictly in log order: a
//! batch is acknowledged only once it and every batch before it are durable.
//!
//! Rules that keep recovery's view simple:
//! - A new segment is started only with nothing in flight, so a batch that was never made
//!   durable (a crash in the middle) can only be the torn tail of the last segment.
//! - After a failed write or fdatasync the shard is poisoned: the batches behind the failed
//!   one are answered with an error even if their own fdatasync succeeded, because they
//!   were written after the failure (the kernel may have dropped the failed batch's pages).

use std::collections::VecDeque;
use std::io;
use std::os::unix::io::AsRawFd;

use io_uring::{opcode, squeue, types, IoUring};

use crate::shard::{signal_eventfd, Batch, Inbox, Job, Msg, Placed, Wake, Writer};
use crate::StoreError;

/// Batches in flight at once: one in fdatasync and the next one written behind it.
const DEPTH: usize = 2;
/// user_data of the read that waits on the queue's eventfd.
const WAKE: u64 = u64::MAX;
/// Low bit of a batch's user_data: its write or its fdatasync.
const WRITE: u64 = 0;
const SYNC: u64 = 1;
/// Largest single write submitted; the kernel caps a write at ~2 GiB anyway.
const MAX_WRITE: usize = 1 << 30;

/// A batch between submission and its answer.
struct InFlight {
    serial: u64,
    batch: Batch,
    /// Bytes of the batch the kernel reported written.
    written: usize,
    /// Completion results of the latest write and fdatasync submitted for it.
    write: Option<i32>,
    sync: Option<i32>,
    durable: bool,
    error: Option<io::Error>,
}

impl InFlight {
    /// Whether the kernel still holds submissions of this batch (and so its buffer).
    fn outstanding(&self) -> bool {
        !self.durable && self.error.is_none()
    }
}

impl Writer {
    /// The shard thread on io_uring: group commit with up to [`DEPTH`] batches in flight.
    pub(crate) fn serve_pipelined(mut self, ring: &mut IoUring, inbox: Inbox) {
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut pending: Vec<Job> = Vec::new();
        let mut spare: Vec<Vec<u8>> = Vec::new();
        let mut serial = 0u64;
        let mut stop = false;
        // Read target of the eventfd wake. Boxed, so it stays put; before it is dropped the
        // read is completed (end of this function).
        let mut wake_buf = Box::new([0u8; 8]);
        let mut wake_armed = false;
        // Pending jobs need a new segment, which waits until nothing is in flight.
        let mut needs_empty_pipeline = false;
        loop {
            if in_flight.is_empty() {
                needs_empty_pipeline = false;
            }
            if in_flight.is_empty() && pending.is_empty() {
                if stop {
                    break;
                }
                // Idle: wait on the channel alone.
                match inbox.recv() {
                    Msg::Job(j) => pending.push(j),
                    Msg::Shutdown => stop = true,
                }
            }
            // Group commit: everything already queued joins the next batch.
            stop |= self.gather(&inbox, &mut pending);
            if self.poisoned && !pending.is_empty() {
                let shard = self.shard;
                self.fail_all(std::mem::take(&mut pending), || {
                    StoreError::ShardPoisoned(shard)
                });
            }
            // Behind a batch in flight, only a batch big enough to be worth its own
            // fdatasync; otherwise the jobs wait and join the next plain group commit.
            let overlap = in_flight.len() < DEPTH
                && pending.len() >= Wake::THRESHOLD
                && !needs_empty_pipeline;
            if !pending.is_empty() && (in_flight.is_empty() || overlap) {
                let jobs = std::mem::take(&mut pending);
                let buf = spare.pop().unwrap_or_default();
                match self.place(jobs, buf, in_flight.is_empty()) {
                    Ok(Placed::Batch(mut batch)) => {
                        batch.overlapped = !in_flight.is_empty();
                        let mut f = InFlight {
                            serial,
                            batch,
                            written: 0,
                            write: None,
                            sync: None,
                            durable: false,
                            error: None,
                        };
                        serial += 1;
                        if let Err(e) = self.submit_write(ring, &f) {
                            f.error = Some(e);
                        }
                        in_flight.push_back(f);
                    }
                    Ok(Placed::Full(jobs, buf)) => {
                        // A new segment waits until the batches in flight are answered.
                        pending = jobs;
                        spare.push(buf);
                        needs_empty_pipeline = true;
                    }
                    Err((jobs, e)) => self.poison(jobs, &e),
                }
            }
            if in_flight.is_empty() {
                continue;
            }
            // Wake for new work only while another batch could still be written.
            let may_overlap = !stop && in_flight.len() < DEPTH && !needs_empty_pipeline;
            if may_overlap && !wake_armed {
                let read = opcode::Read::new(
                    types::Fd(inbox.wake.fd.as_raw_fd()),
                    wake_buf.as_mut_ptr(),
                    wake_buf.len() as u32,
                )
                .build()
                .user_data(WAKE);
                // SAFETY: `wake_buf` is heap memory that outlives the read (see above).
                if unsafe { ring.submission().push(&read) }.is_ok() {
                    wake_armed = true;
                }
            }
            if may_overlap && wake_armed && !inbox.wake.arm(pending.len()) {
                // Enough work queued meanwhile: take it now.
                continue;
            }
            let waited = wait(ring);
            inbox.wake.disarm();
            if let Err(e) = waited {
                self.abandon(ring, &mut in_flight, e);
                // The ring is unusable: the buffers the kernel may still reference were
                // leaked by `abandon`; nothing more can be written.
                if wake_armed {
                    std::mem::forget(wake_buf);
                }
                self.fail_rest(inbox);
                return;
            }
            let completions: Vec<(u64, i32)> = ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result()))
                .collect();
            for (user_data, result) in completions {
                if user_data == WAKE {
                    wake_armed = false;
                    continue;
                }
                let serial = user_data >> 1;
                if let Some(f) = in_flight.iter_mut().find(|f| f.serial == serial) {
                    if user_data & 1 == SYNC {
                        f.sync = Some(result);
                    } else {
                        f.write = Some(result);
                    }
                }
            }
            for f in in_flight.iter_mut() {
                self.settle(ring, f);
            }
            // Answer in log order.
            while in_flight.front().is_some_and(|f| !f.outstanding()) {
                let Some(f) = in_flight.pop_front() else {
                    break;
                };
                if let Some(e) = f.error {
                    let e = StoreError::io(
                        crate::shard::segment_path(&self.root, self.shard, f.batch.seg),
                        e,
                    );
                    if self.poisoned {
                        let msg = e.to_string();
                        self.fail_all(f.batch.jobs, || StoreError::CommitFailed(msg.clone()));
                    } else {
                        self.poison(f.batch.jobs, &e);
                    }
                } else if self.poisoned {
                    // Written behind a failed batch: not acknowledged.
                    let shard = self.shard;
                    self.fail_all(f.batch.jobs, || StoreError::ShardPoisoned(shard));
                } else {
                    spare.push(self.finish(f.batch));
                }
            }
        }
        if wake_armed {
            // Complete the read before its buffer goes: one more wake, then its completion.
            signal_eventfd(&inbox.wake.fd);
            let mut tries = 0;
            while wake_armed && tries < 1000 {
                tries += 1;
                if wait(ring).is_err() {
                    break;
                }
                for cqe in ring.completion() {
                    if cqe.user_data() == WAKE {
                        wake_armed = false;
                    }
                }
            }
            if wake_armed {
                std::mem::forget(wake_buf);
            }
        }
    }

    /// Submits the rest of `f`'s buffer, linked to an fdatasync that starts only once the
    /// write completed in full (otherwise the kernel cancels it with -ECANCELED).
    fn submit_write(&self, ring: &mut IoUring, f: &InFlight) -> io::Result<()> {
        let fd = types::Fd(self.file.as_raw_fd());
        let rest = &f.batch.buf[f.written..];
        let len = rest.len().min(MAX_WRITE);
        let write = opcode::Write::new(fd, rest.as_ptr(), len as u32)
            .offset(f.batch.offset + f.written as u64)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(f.serial << 1 | WRITE);
        let sync = opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(f.serial << 1 | SYNC);
        let mut sq = ring.submission();
        if sq.capacity() - sq.len() < 2 {
            return Err(io::Error::other("submission queue full"));
        }
        // SAFETY: the buffer lives in `f.batch`, which stays in the in-flight queue (its
        // heap memory unmoved) until both completions have been reaped.
        unsafe {
            sq.push(&write)
                .map_err(|_| io::Error::other("submission queue full"))?;
            sq.push(&sync)
                .map_err(|_| io::Error::other("submission queue full"))?;
        }
        Ok(())
    }

    /// Looks at a batch whose write and fdatasync have both completed: durable, failed, or
    /// resubmitted (a short write, or a cancelled fdatasync after a complete write).
    fn settle(&self, ring: &mut IoUring, f: &mut InFlight) {
        let (Some(w), Some(s)) = (f.write, f.sync) else {
            return;
        };
        f.write = None;
        f.sync = None;
        let len = f.batch.buf.len();
        if w < 0 {
            f.error = Some(io::Error::from_raw_os_error(-w));
            return;
        }
        if w == 0 && f.written < len {
            f.error = Some(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
            return;
        }
        f.written += w as usize;
        if f.written >= len && s >= 0 {
            f.durable = true;
            return;
        }
        if s < 0 && s != -libc::ECANCELED {
            f.error = Some(io::Error::from_raw_os_error(-s));
            return;
        }
        let resubmitted = if f.written >= len {
            // Written in full but the fdatasync was cancelled: sync again on its own.
            f.write = Some(0);
            let sync = opcode::Fsync::new(types::Fd(self.file.as_raw_fd()))
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(f.serial << 1 | SYNC);
            // SAFETY: an fdatasync references no memory.
            unsafe { ring.submission().push(&sync) }
                .map_err(|_| io::Error::other("submission queue full"))
        } else {
            // Short write: the remainder, with a fresh linked fdatasync.
            self.submit_write(ring, f)
        };
        if let Err(e) = resubmitted {
            f.write = None;
            f.error = Some(e);
        }
    }

    /// The ring failed: fails every batch in flight. Buffers the kernel may still be
    /// writing from are leaked rather than freed.
    fn abandon(
        &mut self,
        ring: &mut IoUring,
        in_flight: &mut VecDeque<InFlight>,
        error: io::Error,
    ) {
        // A write whose completion has not been seen may still read its buffer.
        let unreaped = |f: &InFlight| f.outstanding() && f.write.is_none();
        for _ in 0..100 {
            if !in_flight.iter().any(unreaped) {
                break;
            }
            for cqe in ring.completion() {
                let serial = cqe.user_data() >> 1;
                if let Some(f) = in_flight.iter_mut().find(|f| f.serial == serial) {
                    if cqe.user_data() & 1 == WRITE {
                        f.write = Some(cqe.result());
                    }
                }
            }
            if ring.submit_and_wait(1).is_err() {
                break;
            }
        }
        let message = error.to_string();
        for f in in_flight.drain(..) {
            let kernel_may_read = unreaped(&f);
            let Batch { jobs, buf, .. } = f.batch;
            if kernel_may_read {
                std::mem::forget(buf);
            }
            self.poison(jobs, &StoreError::CommitFailed(message.clone()));
        }
    }

    /// After the ring failed: answers everything still queued, until the shutdown.
    fn fail_rest(&mut self, inbox: Inbox) {
        while let Msg::Job(j) = inbox.recv() {
            let shard = self.shard;
            self.fail_all(vec![j], || StoreError::ShardPoisoned(shard));
        }
    }
}

/// Submits what is queued and waits for at least one completion.
fn wait(ring: &mut IoUring) -> io::Result<()> {
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            // Completion queue full: the caller reaps and calls again.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}
