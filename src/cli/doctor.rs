//! system doctor.

use clap::Args;

use super::{Ctx, Exit};
use crate::doctor::{self, Status};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Output format: json
    #[arg(long, value_name = "FORMAT", value_parser = ["json", "text"])]
    pub format: Option<String>,
}

/// `system doctor` (the `system` group itself lives in store.rs).
pub fn doctor(ctx: &Ctx, a: DoctorArgs) -> anyhow::Result<i32> {
    let exe = std::path::Path::new("/proc/self/exe");
    let scratch = ctx.paths.tmp();
    let report = doctor::diagnose(
        exe,
        &scratch,
        &ctx.self_args(),
        ctx.paths.uid,
        ctx.paths.gid,
    );
    if a.format.as_deref() == Some("json") {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", doctor::render_text(&report));
    }
    if report.ok {
        return Ok(0);
    }
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.required && c.status == Status::Fail)
        .map(|c| c.id)
        .collect();
    Err(Exit::with(
        1,
        format!(
            "this host is not ready for rootless containers: {} failed: see the fixes above",
            failed.join(", ")
        ),
    ))
}

/// The hidden `__doctor-probe DIR` helper.
pub fn probe(dir: &std::path::Path) -> i32 {
    doctor::probe_main(dir)
}
