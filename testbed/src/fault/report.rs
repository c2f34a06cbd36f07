//! What a fault run found: one check per expected text (or fact), each printed as
//! `expected:` / `source:` / `observed:` / `verdict:`, and the scenario's verdict.

use std::fmt::Write as _;

use super::expect::{scoped, without_client_races, Pattern, Scope};
use super::kubectl::{Client, KubectlOutput};

/// What one client is expected to print, and where that text comes from.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The text on stderr, with placeholders (see [`super::expect`]).
    pub stderr: String,
    pub scope: Scope,
    pub exit_code: i32,
    /// What stdout must be, exactly, when it matters.
    pub stdout: Option<String>,
    /// failures.md row, upstream file or seed; says what is derived rather than observed.
    pub source: String,
}

impl Expected {
    pub fn new(stderr: impl Into<String>, exit_code: i32, source: impl Into<String>) -> Self {
        Self {
            stderr: stderr.into(),
            scope: Scope::Whole,
            exit_code,
            stdout: None,
            source: source.into(),
        }
    }

    pub fn with_stdout(mut self, stdout: impl Into<String>) -> Self {
        self.stdout = Some(stdout.into());
        self
    }

    pub fn last_line(mut self) -> Self {
        self.scope = Scope::LastLine;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Reproduced,
    NotReproduced,
    /// Not run (a client is not installed); does not count against the scenario.
    Skipped(String),
}

/// One comparison of an expectation with what happened.
#[derive(Debug, Clone)]
pub struct Check {
    pub title: String,
    /// The command that was run, as a shell line.
    pub command: String,
    pub expected: String,
    pub source: String,
    pub observed: String,
    pub verdict: Verdict,
}

impl Check {
    /// A kubectl run held against `expected`: the (scoped) stderr must match and the exit code
    /// be the expected one.
    pub fn kubectl(
        title: &str,
        client: Client,
        args: &[&str],
        expected: &Expected,
        output: &KubectlOutput,
    ) -> Self {
        let verdict = match Pattern::parse(&expected.stderr) {
            Ok(pattern) => {
                let stderr = without_client_races(&output.stderr);
                let text = scoped(&stderr, expected.scope);
                let stdout_ok = expected
                    .stdout
                    .as_ref()
                    .is_none_or(|want| *want == output.stdout);
                if pattern.matches(text)
                    && stdout_ok
                    && output.exit_code == Some(expected.exit_code)
                    && !output.timed_out
                {
                    Verdict::Reproduced
                } else {
                    Verdict::NotReproduced
                }
            }
            Err(_) => Verdict::NotReproduced,
        };
        let scope = match expected.scope {
            Scope::Whole => "",
            Scope::LastLine => " (last line of stderr)",
        };
        let stdout_note = match &expected.stdout {
            Some(want) if want.is_empty() => ", nothing on stdout".to_owned(),
            Some(want) => format!(", stdout {want:?}"),
            None => String::new(),
        };
        let mut observed = output.stderr.trim_end().to_owned();
        if observed.is_empty() {
            observed = "(nothing on stderr)".into();
        }
        if !output.stdout.is_empty() {
            let _ = write!(observed, "\nstdout: {}", output.stdout.trim_end());
        }
        match (output.timed_out, output.exit_code) {
            (true, _) => observed.push_str(&format!(
                "\n(killed after {:.0} s)",
                output.elapsed.as_secs_f64()
            )),
            (false, Some(code)) => observed.push_str(&format!("   (exit {code})")),
            (false, None) => observed.push_str("   (killed by a signal)"),
        }
        Self {
            title: format!("{title} — {}", client.label()),
            command: format!("{} {}", client.shell_prefix(), shell_words(args)),
            expected: format!(
                "{}{scope}   (exit {}{stdout_note})",
                if expected.stderr.is_empty() {
                    "(nothing on stderr)"
                } else {
                    &expected.stderr
                },
                expected.exit_code
            ),
            source: expected.source.clone(),
            observed,
            verdict,
        }
    }

    /// A client that is not installed.
    pub fn skipped(title: &str, client: Client, expected: &Expected) -> Self {
        Self {
            title: format!("{title} — {}", client.label()),
            command: String::new(),
            expected: expected.stderr.clone(),
            source: expected.source.clone(),
            observed: String::new(),
            verdict: Verdict::Skipped(format!("{} not found", client.binary().display())),
        }
    }

    /// Any other fact (a file, a conntrack entry, a process count).
    pub fn fact(
        title: &str,
        command: &str,
        expected: &str,
        source: &str,
        observed: &str,
        ok: bool,
    ) -> Self {
        Self {
            title: title.to_owned(),
            command: command.to_owned(),
            expected: expected.to_owned(),
            source: source.to_owned(),
            observed: observed.to_owned(),
            verdict: if ok {
                Verdict::Reproduced
            } else {
                Verdict::NotReproduced
            },
        }
    }
}

/// The result of one scenario.
#[derive(Debug, Clone)]
pub struct FaultReport {
    pub scenario: String,
    pub seed: String,
    pub checks: Vec<Check>,
    /// Free text printed after the checks (what to look at, the lab dir).
    pub notes: Vec<String>,
}

impl FaultReport {
    pub fn new(scenario: &str, seed: &str) -> Self {
        Self {
            scenario: scenario.to_owned(),
            seed: seed.to_owned(),
            checks: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Reproduced when at least one check ran and none that ran failed.
    pub fn reproduced(&self) -> bool {
        let ran = self
            .checks
            .iter()
            .filter(|c| !matches!(c.verdict, Verdict::Skipped(_)));
        let mut any = false;
        for check in ran {
            if check.verdict != Verdict::Reproduced {
                return false;
            }
            any = true;
        }
        any
    }

    pub fn render(&self) -> String {
        let mut out = format!("execlab fault {} (seed: {})\n", self.scenario, self.seed);
        let total = self.checks.len();
        for (i, check) in self.checks.iter().enumerate() {
            let _ = writeln!(out, "\n[{}/{total}] {}", i + 1, check.title);
            if !check.command.is_empty() {
                let _ = writeln!(out, "  run:      {}", indent(&check.command));
            }
            let _ = writeln!(out, "  expected: {}", indent(&check.expected));
            let _ = writeln!(out, "  source:   {}", indent(&check.source));
            if !check.observed.is_empty() {
                let _ = writeln!(out, "  observed: {}", indent(&check.observed));
            }
            let verdict = match &check.verdict {
                Verdict::Reproduced => "REPRODUCED".to_owned(),
                Verdict::NotReproduced => "NOT REPRODUCED".to_owned(),
                Verdict::Skipped(why) => format!("SKIPPED ({why})"),
            };
            let _ = writeln!(out, "  verdict:  {verdict}");
        }
        for note in &self.notes {
            let _ = writeln!(out, "\n{note}");
        }
        let passed = self
            .checks
            .iter()
            .filter(|c| c.verdict == Verdict::Reproduced)
            .count();
        let _ = writeln!(
            out,
            "\nverdict: {} ({passed}/{total} checks reproduced)",
            if self.reproduced() {
                "REPRODUCED"
            } else {
                "NOT REPRODUCED"
            }
        );
        out
    }
}

fn indent(text: &str) -> String {
    text.replace('\n', "\n            ")
}

/// `args` as a shell would need them quoted.
pub fn shell_words(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@".contains(&b))
            {
                (*a).to_owned()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn output(stderr: &str, code: i32) -> KubectlOutput {
        KubectlOutput {
            stdout: String::new(),
            stderr: stderr.to_owned(),
            exit_code: Some(code),
            timed_out: false,
            elapsed: Duration::from_millis(5),
        }
    }

    #[test]
    fn a_check_needs_the_text_and_the_exit_code() {
        let expected = Expected::new("error: boom {n}", 1, "test");
        let args = ["exec", "web", "--", "sh", "-c", "echo 'x'"];
        let ok = Check::kubectl(
            "t",
            Client::Ws132,
            &args,
            &expected,
            &output("error: boom 42\n", 1),
        );
        assert_eq!(ok.verdict, Verdict::Reproduced);
        assert!(
            ok.command
                .ends_with(r#"exec web -- sh -c 'echo '\''x'\'''"#),
            "{}",
            ok.command
        );
        let code = Check::kubectl(
            "t",
            Client::Ws132,
            &args,
            &expected,
            &output("error: boom 42\n", 2),
        );
        assert_eq!(code.verdict, Verdict::NotReproduced);
        let text = Check::kubectl(
            "t",
            Client::Ws132,
            &args,
            &expected,
            &output("error: boom\n", 1),
        );
        assert_eq!(text.verdict, Verdict::NotReproduced);
    }

    #[test]
    fn skipped_checks_do_not_count_but_one_must_run() {
        let mut report = FaultReport::new("x", "000");
        let expected = Expected::new("e", 1, "s");
        report
            .checks
            .push(Check::skipped("t", Client::Spdy120, &expected));
        assert!(!report.reproduced());
        report
            .checks
            .push(Check::fact("f", "", "e", "s", "e", true));
        assert!(report.reproduced());
        report
            .checks
            .push(Check::fact("g", "", "e", "s", "o", false));
        assert!(!report.reproduced());
        let text = report.render();
        assert!(text.contains("verdict:  NOT REPRODUCED"), "{text}");
        assert!(
            text.ends_with("verdict: NOT REPRODUCED (1/3 checks reproduced)\n"),
            "{text}"
        );
    }
}
