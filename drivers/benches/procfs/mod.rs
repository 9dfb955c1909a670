//! What the benchmarks read of a process from /proc: CPU time and `status` figures.

// Each benchmark compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

/// Whose CPU time [`cpu_time`] reads.
pub enum Cpu {
    /// The process itself.
    Own,
    /// Its children, once waited for.
    Children,
}

/// User + system CPU of process `pid` ("self" for this one), from /proc/PID/stat.
pub fn cpu_time(pid: &str, whose: Cpu) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name (which may hold spaces): utime and stime are
    // fields 14 and 15 of the line, cutime and cstime 16 and 17.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let (user, system) = match whose {
        Cpu::Own => (11, 12),
        Cpu::Children => (13, 14),
    };
    let ticks = fields.get(user).copied().unwrap_or(0) + fields.get(system).copied().unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
}

/// Each thread of process `pid`: its name and its user + system CPU so far, summed by name.
pub fn thread_cpu(pid: u32) -> Vec<(String, Duration)> {
    let mut threads: Vec<(String, Duration)> = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for task in tasks.flatten() {
        let tid = task.file_name().to_string_lossy().into_owned();
        let name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let cpu = cpu_time(&format!("{pid}/task/{tid}"), Cpu::Own);
        match threads.iter_mut().find(|(known, _)| *known == name) {
            Some((_, total)) => *total += cpu,
            None => threads.push((name, cpu)),
        }
    }
    threads.sort_by_key(|(_, cpu)| std::cmp::Reverse(*cpu));
    threads
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The number after `key` in a /proc file (kB in `status`, bytes in `io`); 0 when absent.
pub fn proc_number(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
