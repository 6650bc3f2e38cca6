//! Write backends: one io_uring submission (writes linked to an fdatasync), or the
//! portable pwrite + fdatasync. Both return Ok only once fdatasync has completed.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

use io_uring::{opcode, squeue, types, IoUring};

use crate::BackendKind;

pub(crate) enum Backend {
    Uring(Box<IoUring>),
    Portable,
}

/// Creates a ring for one shard thread. That thread alone submits and reaps, so the
/// kernel may defer completion work to io_uring_enter instead of interrupting the
/// thread (SINGLE_ISSUER + DEFER_TASKRUN, Linux 6.1+); older kernels get a plain ring.
/// A SINGLE_ISSUER ring must be created on the thread that uses it.
pub(crate) fn new_ring() -> io::Result<IoUring> {
    let mut ring = match IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(8)
    {
        Ok(r) => r,
        Err(_) => IoUring::new(8)?,
    };
    nop(&mut ring)?;
    Ok(ring)
}

/// Probes io_uring: creates a ring and runs a NOP through it, since some sandboxes let
/// io_uring_setup succeed but refuse operations.
pub(crate) fn probe_uring() -> io::Result<()> {
    let mut ring = IoUring::new(8)?;
    nop(&mut ring)
}

fn nop(ring: &mut IoUring) -> io::Result<()> {
    let nop = opcode::Nop::new().build().user_data(1);
    // SAFETY: NOP references no memory.
    unsafe { ring.submission().push(&nop) }
        .map_err(|_| io::Error::other("submission queue full"))?;
    ring.submit_and_wait(1)?;
    let cqe = ring
        .completion()
        .next()
        .ok_or_else(|| io::Error::other("no completion for NOP"))?;
    if cqe.result() < 0 {
        return Err(io::Error::from_raw_os_error(-cqe.result()));
    }
    Ok(())
}

impl Backend {
    /// Builds the backend of the given kind; call it on the thread that will use it.
    pub(crate) fn new(kind: BackendKind) -> io::Result<Backend> {
        Ok(match kind {
            BackendKind::IoUring => Backend::Uring(Box::new(new_ring()?)),
            BackendKind::Portable => Backend::Portable,
        })
    }

    /// Writes all of `buf` at `offset` and then makes it durable with fdatasync.
    pub(crate) fn write_durable(&mut self, file: &File, offset: u64, buf: &[u8]) -> io::Result<()> {
        match self {
            Backend::Portable => {
                // write_all_at loops over short writes and EINTR.
                file.write_all_at(buf, offset)?;
                file.sync_data()
            }
            Backend::Uring(ring) => uring_write_durable(ring, file, offset, buf),
        }
    }
}

const WRITE_TAG: u64 = 1;
const SYNC_TAG: u64 = 2;
/// Largest single write submitted; the kernel caps a write at ~2 GiB anyway.
const MAX_WRITE: usize = 1 << 30;

fn uring_write_durable(ring: &mut IoUring, file: &File, offset: u64, buf: &[u8]) -> io::Result<()> {
    let fd = types::Fd(file.as_raw_fd());
    let mut done = 0usize;
    loop {
        let rest = &buf[done..];
        let len = rest.len().min(MAX_WRITE);
        let write = opcode::Write::new(fd, rest.as_ptr(), len as u32)
            .offset(offset + done as u64)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(WRITE_TAG);
        // The fdatasync is linked after the write: it starts only if the write completed in
        // full, otherwise the kernel cancels it (-ECANCELED) and we resubmit the remainder.
        let sync = opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(SYNC_TAG);
        {
            let mut sq = ring.submission();
            // SAFETY: `buf` outlives the submission: we wait for both completions below
            // before returning or touching `buf` again.
            unsafe {
                sq.push(&write)
                    .map_err(|_| io::Error::other("submission queue full"))?;
                sq.push(&sync)
                    .map_err(|_| io::Error::other("submission queue full"))?;
            }
        }
        let mut write_res: Option<i32> = None;
        let mut sync_res: Option<i32> = None;
        while write_res.is_none() || sync_res.is_none() {
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => {
                    // Entries may still be in flight and reference `buf`; drain them before
                    // reporting so the buffer is not freed under the kernel.
                    drain(ring, &mut write_res, &mut sync_res);
                    return Err(e);
                }
            }
            for cqe in ring.completion() {
                match cqe.user_data() {
                    WRITE_TAG => write_res = Some(cqe.result()),
                    SYNC_TAG => sync_res = Some(cqe.result()),
                    _ => {}
                }
            }
        }
        let (w, s) = (
            write_res.unwrap_or(-libc::EIO),
            sync_res.unwrap_or(-libc::EIO),
        );
        if w < 0 {
            return Err(io::Error::from_raw_os_error(-w));
        }
        let w = w as usize;
        if w == 0 && len > 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
        }
        done += w;
        if done >= buf.len() && s >= 0 {
            return Ok(());
        }
        if s < 0 && s != -libc::ECANCELED {
            return Err(io::Error::from_raw_os_error(-s));
        }
        if done >= buf.len() {
            // Write complete but the sync was cancelled: sync again on its own.
            return file.sync_data();
        }
        // Short write: loop submits the remainder with a fresh linked fdatasync.
    }
}

fn drain(ring: &mut IoUring, w: &mut Option<i32>, s: &mut Option<i32>) {
    let mut spins = 0;
    while (w.is_none() || s.is_none()) && spins < 1000 {
        spins += 1;
        let _ = ring.submit_and_wait(1);
        for cqe in ring.completion() {
            match cqe.user_data() {
                WRITE_TAG => *w = Some(cqe.result()),
                SYNC_TAG => *s = Some(cqe.result()),
                _ => {}
            }
        }
    }
}
