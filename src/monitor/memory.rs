//! Giving memory back once the container runs: the monitor stays resident for the
//! container's whole life, so what start-up touched must not stay in its RSS.

/// Drops the pages of read-only file mappings (the skiff binary's code and constants,
/// shared libraries) from this process's page tables: start-up touched several MB of
/// them that the event loop never runs again. They stay in the page cache, and what the
/// loop does use faults back in from there, so the monitor idles with the few hundred
/// kB it needs resident. Mappings holding private copies of pages (writable data, and
/// RELRO: relocated by the loader, then made read-only) are left alone: dropping those
/// pages would lose what was written to them.
pub(super) fn release_file_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    // (start, end, eligible) of the mapping whose fields are being read.
    let mut cur: Option<(usize, usize, bool)> = None;
    let mut done: Vec<(usize, usize)> = Vec::new();
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let Some(first) = f.next() else { continue };
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                let perms = f.next().unwrap_or("");
                let inode = f.nth(2).unwrap_or("0");
                let eligible = inode != "0" && perms.starts_with('r') && !perms.contains('w');
                cur = Some((lo, hi, eligible));
                continue;
            }
        }
        if first == "Anonymous:" {
            if let Some((lo, hi, true)) = cur {
                if f.next() == Some("0") {
                    done.push((lo, hi));
                }
            }
            cur = None;
        }
    }
    for (lo, hi) in done {
        // SAFETY: [lo, hi) is a whole read-only, file-backed mapping of this process
        // with no private (written) pages; MADV_DONTNEED only unmaps its pages, which
        // fault back in unchanged from the page cache on the next access.
        unsafe {
            libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_DONTNEED);
        }
    }
}

/// Gives back the stack pages that start-up (argument parsing, SQLite, the clone)
/// touched and that no live frame uses: everything more than a page below the current
/// stack pointer. The monitor then idles with a few pages of stack, not a hundred kB.
pub(super) fn release_dead_stack() {
    let marker = 0u8;
    let sp = std::ptr::addr_of!(marker) as usize;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let Some(line) = maps.lines().find(|l| l.ends_with("[stack]")) else {
        return;
    };
    let Some((lo, _)) = line
        .split_whitespace()
        .next()
        .and_then(|r| r.split_once('-'))
    else {
        return;
    };
    let Ok(lo) = usize::from_str_radix(lo, 16) else {
        return;
    };
    let page = 4096usize;
    // Keep a generous margin below the current frame for the calls still to come.
    let end = (sp.saturating_sub(8 * 1024)) & !(page - 1);
    if end > lo {
        // SAFETY: [lo, end) lies below every live frame of this single-threaded process
        // (the stack grows down from above sp); dropping those pages only makes the kernel
        // hand out zeroed pages if the stack ever grows that deep again.
        unsafe {
            libc::madvise(lo as *mut libc::c_void, end - lo, libc::MADV_DONTNEED);
        }
    }
}
