//! The migration lists of both stores: numbered 1, 2, 3, … with no gap and no repeat, and the
//! same numbers on SQLite and PostgreSQL. A branch merged with a migration number already
//! taken (or skipping one) fails here, before any database is migrated.

/// Why `versions` is not 1..=n in order: the first break.
fn contiguous(versions: &[i64]) -> Result<(), String> {
    if versions.is_empty() {
        return Err("no migration".into());
    }
    for (i, v) in versions.iter().enumerate() {
        let expected = i as i64 + 1;
        if *v != expected {
            let what = if versions[..i].contains(v) {
                "repeated"
            } else if *v > expected {
                "after a gap"
            } else {
                "out of order"
            };
            return Err(format!(
                "migration {v} at position {expected} ({what}; expected {expected})"
            ));
        }
    }
    Ok(())
}

#[test]
fn the_checker_names_gaps_repeats_and_order() {
    assert_eq!(contiguous(&[1, 2, 3]), Ok(()));
    assert!(contiguous(&[]).is_err());
    assert!(contiguous(&[2, 3]).unwrap_err().contains("after a gap"));
    assert!(contiguous(&[1, 2, 4]).unwrap_err().contains("after a gap"));
    assert!(contiguous(&[1, 2, 2, 3]).unwrap_err().contains("repeated"));
    assert!(contiguous(&[1, 3, 2]).unwrap_err().contains("after a gap"));
}

#[test]
fn migration_lists_are_contiguous_from_one_and_the_same_on_both_stores() {
    let sqlite = gw_store::sqlite::migration_versions();
    let postgres = gw_store::postgres::migration_versions();
    contiguous(&sqlite).unwrap_or_else(|e| panic!("SQLite migrations: {e}: {sqlite:?}"));
    contiguous(&postgres).unwrap_or_else(|e| panic!("PostgreSQL migrations: {e}: {postgres:?}"));
    assert_eq!(sqlite, postgres, "both stores know the same migrations");
}
