//! `gateway sandbox PARTY` and `gateway sink`: one strict sandbox of an external party, or the
//! recording HTTP sink, run on its own so an integrator can point a one-stop system or `curl`
//! at it.
//!
//! # Invariants
//! - The sandboxes are the same strict ones the tests and the demo use (`gw-contract-tests`):
//!   what they refuse, the real party would refuse.
//! - [`SANDBOXES`] is the one list of parties that run standalone; the refusal of an unknown
//!   name is built from it, so it cannot name a party that is not there.
//! - Each runs until interrupted; a port already in use exits 1 with the reason.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

type Run = fn(u16) -> Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// The parties `gateway sandbox` runs: command name, what it is (for messages), how to run it.
pub const SANDBOXES: &[(&str, &str, Run)] = &[
    ("portal", "portal", |p| {
        Box::pin(gw_contract_tests::portal::run_standalone(p))
    }),
    ("vnpay", "VNPay", |p| {
        Box::pin(gw_contract_tests::vnpay::run_standalone(p))
    }),
    ("payplatform", "payment platform", |p| {
        Box::pin(gw_contract_tests::payplatform::run_standalone(p))
    }),
    ("paygov", "PayGov", |p| {
        Box::pin(gw_contract_tests::paygov::run_standalone(p))
    }),
    ("momo", "MoMo", |p| {
        Box::pin(gw_contract_tests::momo::run_standalone(p))
    }),
    ("smartca", "VNPT SmartCA", |p| {
        Box::pin(gw_contract_tests::smartca::run_standalone(p))
    }),
    ("mysign", "Viettel MySign", |p| {
        Box::pin(gw_contract_tests::mysign::run_standalone(p))
    }),
    ("csc", "CSC API v2 signing", |p| {
        Box::pin(gw_contract_tests::csc::run_standalone(p))
    }),
    ("agency", "agency (signed push receiver)", |p| {
        Box::pin(gw_contract_tests::agency::run_standalone(p))
    }),
    ("axis", "document axis (edXML)", |p| {
        Box::pin(gw_contract_tests::axis::run_standalone(p))
    }),
];

/// `gateway sandbox PARTY --port N`.
pub async fn sandbox(party: &str, port: u16) -> ExitCode {
    let Some((_, what, run)) = SANDBOXES.iter().find(|(name, _, _)| *name == party) else {
        let names: Vec<&str> = SANDBOXES.iter().map(|(n, _, _)| *n).collect();
        eprintln!(
            "unknown sandbox `{party}`: use {}",
            crate::lab::or_list(&names)
        );
        return ExitCode::from(2);
    };
    match run(port).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot run the {what} sandbox: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `gateway sink --port N`: records every POST; the records at `/_sink/records`.
pub async fn sink(port: u16) -> ExitCode {
    let sink = match gw_contract_tests::sink::Sink::start(port, Default::default()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start the sink: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "sink listening: POST {}  records: http://{}/_sink/records",
        sink.url(),
        sink.addr
    );
    crate::app::wait_for_signal().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    /// The refusal names every party, in the words the help text used before the table.
    #[test]
    fn unknown_party_names_every_sandbox() {
        let names: Vec<&str> = super::SANDBOXES.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(
            crate::lab::or_list(&names),
            "portal, vnpay, payplatform, paygov, momo, smartca, mysign, csc, agency or axis"
        );
    }
}
