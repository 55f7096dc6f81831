//! `gateway map ADAPTER SAMPLE`: what a one-stop adapter makes of a vendor sample, shown
//! without sending anything.
//!
//! # Invariants
//! - Read-only: nothing is published, stored or sent; the same code paths as the running
//!   gateway (`Adapter::parse_inbound`, the portal's `dossier_item`) produce what is shown, so
//!   what an integrator sees here is what the portal would receive.
//! - A sample the adapter refuses exits 1 with the adapter's own problem list.

use std::path::Path;
use std::process::ExitCode;

/// Prints the canonical dossier and the vendor JSON it maps back to, then the portal item.
pub fn map(adapter: &Path, sample: &Path) -> ExitCode {
    let text = match crate::mapping::map_command(adapter, sample) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{text}");
    match portal_payload(adapter, sample) {
        Ok(p) => {
            println!("\n== national portal payload (DongBoHoSoMC data item) ==");
            println!("{p}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The portal item a vendor sample becomes (local procedure code mapped to the national one
/// through the adapter's table).
fn portal_payload(adapter: &Path, sample: &Path) -> Result<String, String> {
    let a = crate::mapping::Adapter::load(adapter).map_err(|p| {
        p.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let text = std::fs::read(sample).map_err(|e| format!("{}: {e}", sample.display()))?;
    let origin = sample
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let inb = a.parse_inbound(&text, &origin).map_err(|e| e.to_string())?;
    let mut d = inb.dossier;
    if let Some(n) = a.national_procedure_code(&d.procedure_code) {
        d.procedure_code = n.to_string();
    }
    let table = crate::connectors::dvcqg::translate::ProcedureTable::default();
    let item = crate::connectors::dvcqg::translate::dossier_item(&d, &table)
        .map_err(|e| format!("{origin}: {e}"))?;
    Ok(serde_json::to_string_pretty(&item).unwrap_or_default())
}
