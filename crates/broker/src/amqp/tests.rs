//! Unit tests of the RabbitMQ broker's pure parts (no broker needed).

use std::collections::BTreeMap;

use lapin::types::AMQPValue;

use super::codec::{broker_death_reason, decode, lstr, properties, table};
use super::connection::with_heartbeat;
use super::options::Backoff;
use super::topology::delay_tier;
use crate::*;

#[test]
fn backoff_grows_to_its_cap_with_jitter() {
    let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let first = b.next_delay();
    assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
    for _ in 0..40 {
        let d = b.next_delay();
        assert!(
            d >= Duration::from_millis(50) && d <= Duration::from_secs(2),
            "{d:?}"
        );
    }
    let late = b.next_delay();
    assert!(
        late >= Duration::from_secs(1),
        "capped ceiling, equal jitter: {late:?}"
    );
    b.reset();
    assert!(b.next_delay() <= Duration::from_millis(100));
}

#[test]
fn delay_picks_the_smallest_tier_not_shorter() {
    assert_eq!(delay_tier(Duration::from_millis(1)).0, "250ms");
    assert_eq!(delay_tier(Duration::from_millis(250)).0, "250ms");
    assert_eq!(delay_tier(Duration::from_millis(251)).0, "1s");
    assert_eq!(delay_tier(Duration::from_secs(2)).0, "5s");
    assert_eq!(delay_tier(Duration::from_secs(3600)).0, "1h");
    // Longer than the largest tier: the largest, plus a not-before header.
    assert_eq!(delay_tier(Duration::from_secs(7200)).0, "1h");
}

#[test]
fn message_survives_the_wire_format() {
    let mut headers = BTreeMap::new();
    headers.insert("traceparent".to_string(), "00-abc-01".to_string());
    // A user header named like a control header does not override the real one.
    headers.insert(HDR_ATTEMPT.to_string(), "99".to_string());
    let msg = Message {
        id: "01J".into(),
        key: "DOSSIER-1".into(),
        headers,
        attempt: 2,
        body: Bytes::from_static(b"payload"),
    };
    let props = properties(&msg, Vec::new()).unwrap();
    assert_eq!(props.delivery_mode(), &Some(2));
    let mut d =
        lapin::message::Delivery::mock(7, "gw.work".into(), "q".into(), false, b"payload".to_vec());
    d.properties = props;
    let got = decode(&d).unwrap();
    assert_eq!(got.message.id, "01J");
    assert_eq!(got.message.key, "DOSSIER-1");
    assert_eq!(got.message.attempt, 2);
    assert_eq!(got.message.body, msg.body);
    assert_eq!(got.message.headers.len(), 1);
    assert_eq!(got.message.headers["traceparent"], "00-abc-01");
    assert_eq!(got.delivery_count, 1);
    assert_eq!(got.not_before, None);
}

#[test]
fn broker_dead_letters_get_a_reason_but_delay_expiries_do_not() {
    let death = |reason: &str, queue: &str| {
        AMQPValue::FieldTable(table(vec![
            ("reason", lstr(reason)),
            ("queue", lstr(queue)),
            ("count", AMQPValue::LongLongInt(1)),
        ]))
    };
    let expired_only = AMQPValue::FieldArray(vec![death("expired", "gw.delay.1s")].into());
    assert_eq!(broker_death_reason(&expired_only), None);
    let limit = AMQPValue::FieldArray(
        vec![
            death("delivery_limit", "q"),
            death("expired", "gw.delay.1s"),
        ]
        .into(),
    );
    let reason = broker_death_reason(&limit).unwrap();
    assert!(reason.starts_with("delivery_limit"), "{reason}");
    assert!(reason.contains("queue q"), "{reason}");
}

#[test]
fn heartbeat_is_added_to_the_url_once() {
    assert_eq!(
        with_heartbeat("amqp://h:5672/%2f", 10),
        "amqp://h:5672/%2f?heartbeat=10"
    );
    assert_eq!(
        with_heartbeat("amqp://h/%2f?frame_max=8192", 5),
        "amqp://h/%2f?frame_max=8192&heartbeat=5"
    );
    assert_eq!(
        with_heartbeat("amqp://h/%2f?heartbeat=30", 5),
        "amqp://h/%2f?heartbeat=30"
    );
}
