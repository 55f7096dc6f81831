//! The shared checks of [`PaymentStore`](crate::payments::PaymentStore), run on both stores by
//! `tests/payments.rs`.
//!
//! # Invariants
//!
//! - Each check starts from an empty store and uses its own references, so the order they run in
//!   does not matter.

use super::*;

fn order(reference: &str, dossier: &str, created_ms: i64) -> NewOrder {
    NewOrder {
        reference: reference.into(),
        provider: "vnpay".into(),
        dossier_code: dossier.into(),
        fee_items: vec!["LEPHI".into()],
        amount: 50_000,
        currency: "VND".into(),
        created_ms,
        deadline_ms: created_ms + 1_000,
    }
}

fn change(reference: &str, to: OrderState, notice: bool, at_ms: i64) -> Change {
    Change {
        reference: reference.into(),
        to,
        source: "callback".into(),
        provider_txn: Some("T1".into()),
        detail: "amount=50000".into(),
        at_ms,
        notice: notice.then(|| Notice {
            id: format!("n-{reference}-{}", to.as_str()),
            reference: reference.into(),
            body: "{}".into(),
            created_ms: at_ms,
        }),
    }
}

/// Invariants 1-4.
pub async fn all(s: &dyn PaymentStore) {
    known_fees(s).await;
    // 1. One order per reference.
    let first = s.create_order(order("R1", "D1", 100)).await.unwrap();
    assert!(matches!(first, Created::New(_)));
    let mut again = order("R1", "D1", 999);
    again.amount = 1;
    let second = s.create_order(again).await.unwrap();
    assert_eq!(second, Created::Existing(first.order().clone()));
    assert_eq!(s.orders_for_dossier("D1").await.unwrap().len(), 1);
    s.set_pay_url("R1", "https://pay/1").await.unwrap();
    s.set_pay_url("R1", "https://pay/2").await.unwrap();
    let o = s.order("R1").await.unwrap().unwrap();
    assert_eq!(o.pay_url.as_deref(), Some("https://pay/1"));
    assert_eq!(o.state, OrderState::Requested);
    assert_eq!(s.order("nope").await.unwrap(), None);

    // 2. Legal, unchanged, refused, not found.
    assert_eq!(
        s.overdue("vnpay", 2_000).await.unwrap().len(),
        1,
        "R1 is past its deadline"
    );
    assert!(s.overdue("vnpay", 1_000).await.unwrap().is_empty());
    let paid = s
        .transition(change("R1", OrderState::Paid, true, 200))
        .await
        .unwrap();
    let Transitioned::Applied(p) = paid else {
        panic!("{paid:?}")
    };
    assert_eq!(p.state, OrderState::Paid);
    assert_eq!(p.provider_txn.as_deref(), Some("T1"));
    assert!(matches!(
        s.transition(change("R1", OrderState::Paid, true, 300))
            .await
            .unwrap(),
        Transitioned::Unchanged(_)
    ));
    assert!(matches!(
        s.transition(change("R1", OrderState::Failed, true, 300))
            .await
            .unwrap(),
        Transitioned::Refused(_)
    ));
    assert!(matches!(
        s.transition(change("R1", OrderState::Requested, false, 300))
            .await
            .unwrap(),
        Transitioned::Refused(_)
    ));
    assert_eq!(
        s.transition(change("zz", OrderState::Paid, true, 300))
            .await
            .unwrap(),
        Transitioned::NotFound
    );
    assert!(s.overdue("vnpay", 2_000).await.unwrap().is_empty());

    // 3. The trail and the notice came with the applied change only.
    let trail = s.transitions("R1").await.unwrap();
    assert_eq!(
        trail
            .iter()
            .map(|t| (t.seq, t.from, t.to))
            .collect::<Vec<_>>(),
        vec![
            (0, None, OrderState::Requested),
            (1, Some(OrderState::Requested), OrderState::Paid)
        ]
    );
    let notices = s.unpublished_notices(10).await.unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].reference, "R1");

    // Expired, then a late verified payment, then a refund.
    s.create_order(order("R2", "D1", 150)).await.unwrap();
    for (to, at) in [
        (OrderState::Expired, 400),
        (OrderState::Paid, 500),
        (OrderState::Refunded, 600),
    ] {
        assert!(matches!(
            s.transition(change("R2", to, false, at)).await.unwrap(),
            Transitioned::Applied(_)
        ));
    }
    assert_eq!(s.transitions("R2").await.unwrap().len(), 4);
    assert_eq!(
        s.created_between("vnpay", 100, 150)
            .await
            .unwrap()
            .iter()
            .map(|o| o.order.reference.as_str())
            .collect::<Vec<_>>(),
        vec!["R1"]
    );
    assert_eq!(s.created_between("vnpay", 0, 1_000).await.unwrap().len(), 2);
    assert!(s
        .created_between("other", 0, 1_000)
        .await
        .unwrap()
        .is_empty());

    // 4. Published notices leave the outbox; marking twice is harmless.
    s.mark_notice_published(&notices[0].id, 700).await.unwrap();
    s.mark_notice_published(&notices[0].id, 800).await.unwrap();
    assert!(s.unpublished_notices(10).await.unwrap().is_empty());
}

/// Invariant 5: the newest snapshot's fees are kept; an older or equal one changes nothing.
async fn known_fees(s: &dyn PaymentStore) {
    let fee = |code: &str, amount: i64, paid: bool| KnownFee {
        code: code.into(),
        amount,
        paid,
    };
    let at = |version: i64, fees: Vec<KnownFee>| KnownFees {
        dossier_code: "KF-1".into(),
        version,
        fees,
        updated_ms: version * 10,
    };
    assert_eq!(s.known_fees("KF-1").await.unwrap(), None);
    assert!(s
        .note_fees(at(2, vec![fee("LEPHI", 500_000, false)]))
        .await
        .unwrap());
    assert!(!s
        .note_fees(at(1, vec![fee("LEPHI", 1, false)]))
        .await
        .unwrap());
    assert!(!s
        .note_fees(at(2, vec![fee("LEPHI", 2, false)]))
        .await
        .unwrap());
    assert_eq!(
        s.known_fees("KF-1").await.unwrap(),
        Some(at(2, vec![fee("LEPHI", 500_000, false)]))
    );
    let newer = vec![fee("LEPHI", 500_000, true), fee("PHI", 30_000, false)];
    assert!(s.note_fees(at(3, newer.clone())).await.unwrap());
    assert_eq!(s.known_fees("KF-1").await.unwrap(), Some(at(3, newer)));
}
