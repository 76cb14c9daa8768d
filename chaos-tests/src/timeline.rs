//! The timeline of a chaos run: the plan, each fault's start and end with the leader at that
//! moment, the checks. Every line is written and flushed as it happens, so a run that dies
//! still leaves it.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crate::Result;

/// The timeline file: every line written (and flushed) as it happens.
pub(crate) struct Timeline {
    file: File,
    /// Where offsets count from.
    pub(crate) start: Instant,
    /// Every line so far.
    pub(crate) text: String,
}

impl Timeline {
    pub(crate) fn create(path: &Path) -> Result<Timeline> {
        Ok(Timeline {
            file: File::create(path)?,
            start: Instant::now(),
            text: String::new(),
        })
    }

    pub(crate) fn note(&mut self, text: &str) -> Result<()> {
        self.text.push_str(text.trim_end());
        self.text.push('\n');
        writeln!(self.file, "{}", text.trim_end())?;
        self.file.flush()?;
        Ok(())
    }

    /// `+  12.345s  leader=2  what`
    pub(crate) fn event(&mut self, leader: Option<u64>, what: &str) -> Result<()> {
        let leader = leader.map_or("none".into(), |l| l.to_string());
        let line = format!(
            "+{:>8.3}s  leader={leader:<4}  {what}",
            self.start.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        self.note(&line)
    }
}
