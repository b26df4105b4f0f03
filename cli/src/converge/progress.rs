//! Docker's convergence progress: `overall progress: 2 out of 3 tasks`, one line per slot
//! (`1/3: running   [==================================================>]`) and
//! `verify: Service converged`. On a terminal the block is redrawn in place; otherwise each
//! line is printed again only when it changes, without bars.

use swarm_api::TaskState;

use super::assess::Assessment;

/// The longest state name, which state cells are padded to (as docker pads them).
const STATE_WIDTH: usize = 9;
/// Bar width in `=` at 100%.
const BAR: usize = 50;

/// How far along the task life cycle a state is, out of `RUNNING_STAGE` (docker's numbering).
fn stage(state: TaskState) -> usize {
    match state {
        TaskState::New => 1,
        TaskState::Pending => 3,
        TaskState::Assigned => 4,
        TaskState::Accepted => 5,
        TaskState::Preparing => 6,
        TaskState::Ready => 7,
        TaskState::Starting => 8,
        _ => RUNNING_STAGE,
    }
}

const RUNNING_STAGE: usize = 9;

/// `[=====>     ] ` for a state.
pub fn bar(state: TaskState) -> String {
    let filled = (stage(state) * 100 / RUNNING_STAGE / 2).min(BAR);
    format!("[{}>{}] ", "=".repeat(filled), " ".repeat(BAR - filled))
}

/// The lines of one assessment, keyed so a plain writer can tell which ones changed.
pub fn lines(a: &Assessment, bars: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(note) = &a.note {
        out.push(("rollback".to_string(), format!("rollback: {note}")));
    }
    let what = if a.rolling_back {
        "rolling back update: "
    } else {
        ""
    };
    out.push((
        "overall".to_string(),
        format!(
            "overall progress: {what}{} out of {} tasks",
            a.running, a.desired
        ),
    ));
    for s in &a.slots {
        let state = s.state.map(|st| st.as_str()).unwrap_or("");
        let mut line = format!("{}: {state:<STATE_WIDTH$} ", s.label);
        match s.state {
            Some(st) if st.is_terminal() => line.push_str(&s.message),
            Some(st) if bars => line.push_str(&bar(st)),
            _ => {}
        }
        out.push((s.label.clone(), line.trim_end().to_string()));
    }
    out
}

/// Where progress goes: redrawn on a terminal, changed lines only otherwise, or nowhere.
pub struct Progress {
    mode: Mode,
    /// Lines printed by the last redraw (terminal), or the last text of each key (plain).
    shown: Vec<(String, String)>,
    out: Box<dyn std::io::Write + Send>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Terminal,
    Plain,
    Quiet,
}

impl Progress {
    pub fn new(mode: Mode, out: Box<dyn std::io::Write + Send>) -> Self {
        Progress {
            mode,
            shown: Vec::new(),
            out,
        }
    }

    /// Shows the assessment (and an optional `verify:` line under it).
    pub fn show(&mut self, a: &Assessment, verify: Option<&str>) {
        let mut lines = lines(a, self.mode == Mode::Terminal);
        if let Some(v) = verify {
            lines.push(("verify".to_string(), format!("verify: {v}")));
        }
        match self.mode {
            Mode::Quiet => {}
            Mode::Terminal => {
                let mut text = String::new();
                if !self.shown.is_empty() {
                    text.push_str(&format!("\x1b[{}A", self.shown.len()));
                }
                for (_, l) in &lines {
                    text.push_str(&format!("\x1b[2K{l}\n"));
                }
                // Fewer lines than last time (a scale-down): blank the rest, come back up.
                let extra = self.shown.len().saturating_sub(lines.len());
                if extra > 0 {
                    text.push_str(&"\x1b[2K\n".repeat(extra));
                    text.push_str(&format!("\x1b[{extra}A"));
                }
                let _ = self.out.write_all(text.as_bytes());
                let _ = self.out.flush();
                self.shown = lines;
            }
            Mode::Plain => {
                let mut text = String::new();
                for (key, l) in &lines {
                    let before = self.shown.iter().find(|(k, _)| k == key).map(|(_, t)| t);
                    if before != Some(l) {
                        text.push_str(l);
                        text.push('\n');
                        match self.shown.iter_mut().find(|(k, _)| k == key) {
                            Some(entry) => entry.1 = l.clone(),
                            None => self.shown.push((key.clone(), l.clone())),
                        }
                    }
                }
                let _ = self.out.write_all(text.as_bytes());
                let _ = self.out.flush();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::converge::assess::{SlotProgress, Verdict};
    use std::sync::{Arc, Mutex};

    fn assessment(states: &[Option<TaskState>]) -> Assessment {
        let n = states.len();
        Assessment {
            running: states
                .iter()
                .filter(|s| **s == Some(TaskState::Running))
                .count() as u64,
            desired: n as u64,
            rolling_back: false,
            note: None,
            slots: states
                .iter()
                .enumerate()
                .map(|(i, s)| SlotProgress {
                    label: format!("{}/{n}", i + 1),
                    state: *s,
                    message: String::new(),
                })
                .collect(),
            verdict: Verdict::Waiting,
        }
    }

    #[test]
    fn golden_terminal_lines() {
        let a = assessment(&[Some(TaskState::Running), Some(TaskState::Preparing), None]);
        let text: Vec<String> = lines(&a, true).into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            text,
            vec![
                "overall progress: 1 out of 3 tasks",
                "1/3: running   [==================================================>]",
                "2/3: preparing [=================================>                 ]",
                "3/3:",
            ]
        );
    }

    #[test]
    fn golden_plain_output_prints_changes_only() {
        let buf = Arc::new(Mutex::new(Vec::new()));
        struct W(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut p = Progress::new(Mode::Plain, Box::new(W(buf.clone())));
        p.show(&assessment(&[Some(TaskState::Pending), None]), None);
        p.show(&assessment(&[Some(TaskState::Running), None]), None);
        p.show(
            &assessment(&[Some(TaskState::Running), Some(TaskState::Running)]),
            Some("Service converged"),
        );
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "overall progress: 0 out of 2 tasks\n1/2: pending\n2/2:\n\
             overall progress: 1 out of 2 tasks\n1/2: running\n\
             overall progress: 2 out of 2 tasks\n2/2: running\nverify: Service converged\n"
        );
    }

    #[test]
    fn terminal_output_redraws_in_place() {
        let buf = Arc::new(Mutex::new(Vec::new()));
        struct W(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut p = Progress::new(Mode::Terminal, Box::new(W(buf.clone())));
        p.show(&assessment(&[None]), None);
        p.show(&assessment(&[Some(TaskState::Running)]), None);
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "\x1b[2Koverall progress: 0 out of 1 tasks\n\x1b[2K1/1:\n\
             \x1b[2A\x1b[2Koverall progress: 1 out of 1 tasks\n\
             \x1b[2K1/1: running   [==================================================>]\n"
        );
        buf.lock().unwrap().clear();
        p.show(&assessment(&[]), None);
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "\x1b[2A\x1b[2Koverall progress: 0 out of 0 tasks\n\x1b[2K\n\x1b[1A"
        );
    }
}
