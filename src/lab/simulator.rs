//! A one-stop traffic simulator: realistic dossiers with synthetic owners, moving through their
//! lifecycle (received → in processing → supplement requested → processed → result returned),
//! with fees, attachments and progress steps. Every event a dossier produces is returned in the
//! order the one-stop system would send it; versions grow by one per snapshot.
//!
//! The mix is what a commune's service-quality index sees: most dossiers submitted online
//! (`channel`), some fee-free, a result file on most finished ones, and a processing pace per
//! dossier so that some finish after their due date (three days after reception). No step is
//! dated in the future: a dossier whose next step would be is still in progress. Each snapshot
//! carries the step that brought its status (so its status has a time).
//!
//! The data is synthetic: names are drawn from common Vietnamese names, ID numbers and phone
//! numbers are random digits of the right shape. It exists to exercise the gateway, never to
//! look like a real person.

use ::time::format_description::well_known::Rfc3339;
use ::time::{Duration as TDuration, OffsetDateTime};
use rand::seq::IndexedRandom;
use rand::Rng;
use serde_json::Value;

use crate::model::*;

/// National procedure codes the portal sandbox's catalogue knows, with names and fields.
pub const PROCEDURES: &[(&str, &str, &str, &str)] = &[
    ("1.001193", "Đăng ký khai sinh", "HT", "Hộ tịch"),
    ("1.000894", "Đăng ký kết hôn", "HT", "Hộ tịch"),
    ("1.000656", "Đăng ký khai tử", "HT", "Hộ tịch"),
    (
        "1.004884",
        "Chứng thực bản sao từ bản chính",
        "CT",
        "Chứng thực",
    ),
    ("1.004873", "Chứng thực chữ ký", "CT", "Chứng thực"),
    (
        "1.003003",
        "Cấp giấy chứng nhận quyền sử dụng đất",
        "DD",
        "Đất đai",
    ),
    ("1.004227", "Đăng ký biến động đất đai", "DD", "Đất đai"),
];

const FAMILY: &[&str] = &[
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ",
];
const MIDDLE: &[&str] = &["Văn", "Thị", "Hữu", "Minh", "Ngọc", "Thanh", "Đức", "Thu"];
const GIVEN: &[&str] = &[
    "An", "Bình", "Chi", "Dũng", "Giang", "Hà", "Hùng", "Lan", "Linh", "Nam", "Phương", "Quân",
    "Thảo", "Trang", "Tuấn",
];
const ORGS: &[&str] = &[
    "Công ty TNHH Minh Phát",
    "Hợp tác xã Nông nghiệp Tân Lập",
    "Công ty CP Xây dựng Hòa Bình",
];

/// One event as the one-stop system sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: &'static str,
    pub key: String,
    pub version: Option<i64>,
    pub payload: Value,
}

fn fmt(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("formats")
}

fn digits(rng: &mut impl Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// The dossier code: unit code, date, commune and sequence.
pub fn dossier_code(unit: &str, seq: usize) -> String {
    format!("{unit}-241124-{seq:06}")
}

/// Generate one dossier's events: snapshots (`dossier.upserted`, versioned) and progress steps
/// (`dossier.progress`, one per step, never coalesced).
pub fn dossier_events(
    rng: &mut impl Rng,
    unit: &str,
    seq: usize,
    max_snapshots: usize,
) -> Vec<Event> {
    let (proc_code, proc_name, field_code, field_name) =
        *PROCEDURES.choose(rng).expect("non-empty");
    let commune = rng.random_range(1..=148);
    let citizen = rng.random_bool(0.85);
    let owner = Owner {
        name: Personal(if citizen {
            format!(
                "{} {} {}",
                FAMILY.choose(rng).unwrap(),
                MIDDLE.choose(rng).unwrap(),
                GIVEN.choose(rng).unwrap()
            )
        } else {
            ORGS.choose(rng).unwrap().to_string()
        }),
        kind: if citizen {
            OwnerKind::Citizen
        } else {
            OwnerKind::Organisation
        },
        id_number: Some(Personal(if citizen {
            format!("0{}", digits(rng, 11))
        } else {
            digits(rng, 10)
        })),
        phone: Some(Personal(format!("09{}", digits(rng, 8)))),
        email: None,
        address: Some(Personal(format!(
            "Thôn {}, xã số {commune}",
            rng.random_range(1..12)
        ))),
    };
    let received = OffsetDateTime::now_utc().to_offset(crate::model::time::VIETNAM)
        - TDuration::days(rng.random_range(0..5))
        - TDuration::minutes(rng.random_range(0..600));
    let code = dossier_code(unit, seq);
    let lifecycle = [
        DossierStatus::Received,
        DossierStatus::InProcessing,
        DossierStatus::SupplementRequested,
        DossierStatus::InProcessing,
        DossierStatus::Processed,
        DossierStatus::ResultReturned,
    ];
    let snapshots = rng.random_range(1..=max_snapshots.clamp(1, lifecycle.len()));
    // Hours between two steps: most dossiers move briskly, some are slow enough to be late.
    let pace = *[2i64, 4, 6, 8, 20, 26].choose(rng).expect("non-empty");
    let now = OffsetDateTime::now_utc();
    let channel = match rng.random_range(0..100) {
        0..=59 => Channel::Online,
        60..=94 => Channel::InPerson,
        _ => Channel::Post,
    };
    let with_result_file = rng.random_bool(0.8);
    let mut d = Dossier {
        code: code.clone(),
        version: 0,
        procedure_code: proc_code.to_string(),
        procedure_name: Some(proc_name.to_string()),
        field_code: Some(field_code.to_string()),
        field_name: Some(field_name.to_string()),
        receipt_number: Some(format!("BN-{commune:03}-{seq:06}")),
        owner,
        summary: format!("{proc_name} - hồ sơ số {seq}"),
        received_at: fmt(received),
        due_at: fmt(received + TDuration::days(3)),
        returned_at: None,
        finished_at: None,
        status: DossierStatus::Received,
        handling_unit: format!("UBND xã số {commune}"),
        note: None,
        fees: vec![Fee {
            code: "LP01".into(),
            name: "Lệ phí".into(),
            amount_vnd: [0, 8000, 15000, 50000, 100000]
                .choose(rng)
                .copied()
                .unwrap(),
            category: None,
            paid: false,
        }],
        attachments: vec![Attachment {
            id: format!("TL-{seq}-1"),
            name: "Tờ khai.pdf".into(),
            component_code: Some("TK01".into()),
            url: format!("https://onestop.example/files/{seq}/1"),
            deleted: false,
        }],
        progress: vec![],
        channel: Some(channel),
        results: vec![],
    };
    let mut events = Vec::new();
    for (i, status) in lifecycle.iter().take(snapshots).enumerate() {
        let at = received + TDuration::hours(i as i64 * pace);
        if i > 0 && at > now {
            break;
        }
        d.version = i as i64 + 1;
        d.status = *status;
        // The version marker lets the sandbox's records tell versions apart.
        d.note = Some(format!("v{}", d.version));
        if *status == DossierStatus::Processed {
            d.finished_at = Some(fmt(at));
        }
        if *status == DossierStatus::ResultReturned {
            d.returned_at = Some(fmt(at));
        }
        if *status == DossierStatus::Processed && with_result_file {
            d.results = vec![Attachment {
                id: format!("KQ-{seq}-1"),
                name: "Kết quả.pdf".into(),
                component_code: Some("KQ01".into()),
                url: format!("https://onestop.example/results/{seq}/1"),
                deleted: false,
            }];
        }
        let step = ProgressStep {
            handler: format!("Cán bộ {}", GIVEN.choose(rng).unwrap()),
            title: Some("Chuyên viên".into()),
            department: "Bộ phận một cửa".into(),
            content: format!("Chuyển trạng thái: {}", status.national_code()),
            at: fmt(at),
            status: *status,
            started_at: Some(fmt(at - TDuration::hours(1))),
            due_at: Some(d.due_at.clone()),
        };
        d.progress = if i > 0 { vec![step.clone()] } else { vec![] };
        events.push(Event {
            kind: "dossier.upserted",
            key: code.clone(),
            version: Some(d.version),
            payload: serde_json::to_value(&d).expect("serializes"),
        });
        if i > 0 {
            events.push(Event {
                kind: "dossier.progress",
                key: code.clone(),
                version: None,
                payload: serde_json::json!({"code": code, "step": step}),
            });
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_ordered_versioned_and_valid() {
        let mut rng = rand::rng();
        for seq in 0..200 {
            let ev = dossier_events(&mut rng, "000.00.01.H22", seq, 6);
            let versions: Vec<i64> = ev.iter().filter_map(|e| e.version).collect();
            assert!(!versions.is_empty());
            assert!(
                versions.windows(2).all(|w| w[1] == w[0] + 1),
                "{versions:?}"
            );
            for e in &ev {
                if e.kind == "dossier.upserted" {
                    let d: Dossier = serde_json::from_value(e.payload.clone()).unwrap();
                    assert_eq!(d.code, e.key);
                    assert!(OffsetDateTime::parse(&d.received_at, &Rfc3339).is_ok());
                }
            }
            let progress = ev.iter().filter(|e| e.kind == "dossier.progress").count();
            assert_eq!(progress, versions.len() - 1);
        }
    }
}
