#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn rec(seq: u64) -> Recommendation {
    Recommendation {
        seq,
        id: format!("cdu-margin-{seq}"),
        site: "plant1".into(),
        node: "cdu-edge-1".into(),
        problem: "cdu-margin".into(),
        issued_ms: 1_800_000_000_000,
        expires_ms: 1_800_000_900_000,
        setpoints: vec![Setpoint {
            tag: "heater.outlet_temp_sp".into(),
            unit: "°C".into(),
            current: 360.0,
            proposed: 366.5,
        }],
        benefit_per_hour: 420.0,
        benefit_per_year: 3_360_000.0,
        benefit_unit: "$/h".into(),
        confidence: 0.8,
        confidence_text: "held-out R² 0.93".into(),
        rationale: "the naphtha 95 % spec is binding".into(),
    }
}

fn fresh(last_seq: u64, now_ms: i64) -> Freshness<'static> {
    Freshness {
        site: "plant1",
        node: "cdu-edge-1",
        now_ms,
        last_seq,
    }
}

#[test]
fn a_sealed_recommendation_opens_with_the_hubs_public_key() {
    let (_, key) = SigningKey::generate().unwrap();
    let r = rec(7);
    let (topic, bytes) = seal(&r, &key).unwrap();
    assert_eq!(topic.to_string(), "apos/v1/plant1/cdu-edge-1/rec");
    assert_eq!(open(&topic, &bytes, &key.public()).unwrap(), r);
    assert_eq!(
        crate::envelope::peek_kind(&bytes),
        Some(Kind::Recommendation)
    );
}

#[test]
fn another_key_a_changed_byte_or_another_topic_is_refused() {
    let (_, hub) = SigningKey::generate().unwrap();
    let (_, other) = SigningKey::generate().unwrap();
    let (topic, bytes) = seal(&rec(1), &other).unwrap();
    assert_eq!(
        open(&topic, &bytes, &hub.public()),
        Err(ProtocolError::BadSignature)
    );
    let (topic, bytes) = seal(&rec(1), &hub).unwrap();
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        assert!(open(&topic, &b, &hub.public()).is_err(), "byte {i} flipped");
    }
    // The same bytes republished on another node's topic.
    let elsewhere = Topic::new("plant1", "cdu-edge-2", Kind::Recommendation).unwrap();
    assert_eq!(
        open(&elsewhere, &bytes, &hub.public()),
        Err(ProtocolError::BadSignature)
    );
    // The node's HMAC path does not open it.
    let nk = crate::NodeKey::new(b"0123456789abcdef").unwrap();
    assert!(crate::envelope::open(&topic, &bytes, &nk, 1 << 20).is_err());
}

#[test]
fn the_key_survives_its_stored_form_and_its_text_form() {
    let (pk8, key) = SigningKey::generate().unwrap();
    let again = SigningKey::from_pkcs8(&pk8).unwrap();
    assert_eq!(again.public(), key.public());
    let text = key.public().to_text();
    assert!(text.starts_with("ed25519:") && text.len() == 8 + 64);
    assert_eq!(VerifyKey::from_text(&text).unwrap(), key.public());
    for bad in [
        "",
        "ed25519:",
        "rsa:00",
        &text[..text.len() - 1],
        &text.replace("ed25519:", "ed25519:zz")[..72],
    ] {
        assert!(VerifyKey::from_text(bad).is_err(), "{bad:?}");
    }
    assert!(SigningKey::from_pkcs8(b"not a key").is_err());
}

#[test]
fn freshness_refuses_other_nodes_expired_future_and_replayed_messages() {
    let r = rec(5);
    let now = r.issued_ms + 1000;
    assert_eq!(fresh(4, now).check(&r), Ok(()));
    assert_eq!(
        fresh(5, now).check(&r),
        Err(Stale::Replay { seq: 5, last: 5 })
    );
    assert!(matches!(fresh(9, now).check(&r), Err(Stale::Replay { .. })));
    assert_eq!(fresh(0, r.expires_ms).check(&r), Err(Stale::Expired(0)));
    assert!(matches!(
        fresh(0, r.issued_ms - MAX_CLOCK_SKEW_MS - 1).check(&r),
        Err(Stale::FromTheFuture(_))
    ));
    let mut other = r.clone();
    other.node = "cdu-edge-2".into();
    assert!(matches!(
        fresh(0, now).check(&other),
        Err(Stale::OtherNode { .. })
    ));
}

type Change = Box<dyn Fn(&mut Recommendation)>;

#[test]
fn values_out_of_range_are_refused_before_signing_and_after_opening() {
    let (_, key) = SigningKey::generate().unwrap();
    let cases: Vec<(&str, Change)> = vec![
        ("seq", Box::new(|r| r.seq = 0)),
        ("setpoints", Box::new(|r| r.setpoints.clear())),
        (
            "setpoints[0].proposed",
            Box::new(|r| r.setpoints[0].proposed = f64::NAN),
        ),
        ("confidence", Box::new(|r| r.confidence = 1.5)),
        ("expires_ms", Box::new(|r| r.expires_ms = r.issued_ms)),
        (
            "rationale",
            Box::new(|r| r.rationale = "x".repeat(MAX_RATIONALE + 1)),
        ),
        (
            "setpoints[1].tag",
            Box::new(|r| {
                let s = r.setpoints[0].clone();
                r.setpoints.push(s)
            }),
        ),
    ];
    for (field, change) in cases {
        let mut r = rec(1);
        change(&mut r);
        let e = check(&r).unwrap_err();
        assert_eq!(e.field, field);
        assert!(seal(&r, &key).is_err());
    }
}

#[test]
fn garbage_never_panics() {
    let (_, key) = SigningKey::generate().unwrap();
    let topic = Topic::new("plant1", "cdu-edge-1", Kind::Recommendation).unwrap();
    let (_, good) = seal(&rec(3), &key).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..200usize {
        let mut b: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(open(&topic, &b, &key.public()).is_err());
        // Truncations of a good message.
        b = good[..len.min(good.len())].to_vec();
        if len < good.len() {
            assert!(open(&topic, &b, &key.public()).is_err());
        }
    }
    let huge = vec![0u8; MAX_RECOMMENDATION_BYTES + 1];
    assert!(matches!(
        open(&topic, &huge, &key.public()),
        Err(ProtocolError::TooLarge(..))
    ));
}
