//! Per-pool gauges, PgBouncer's `SHOW POOLS` as metrics: for each
//! (database, user) pair, clients served or idle between requests
//! (`cl_active`), clients waiting for a server connection (`cl_waiting`),
//! server connections in use (`sv_active`) and pooled (`sv_idle`), and the
//! longest current wait (`maxwait`). Pure: the snapshot's client views and
//! slot rows in, rows out.

use super::report::SlotRow;
use crate::shmem::clients::ClientView;
use std::collections::BTreeMap;

/// One pool's gauges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolRow {
    pub database: String,
    pub user: String,
    pub cl_active: u64,
    pub cl_waiting: u64,
    pub sv_active: u64,
    pub sv_idle: u64,
    /// Seconds the longest-waiting client has waited so far (0 with none).
    pub maxwait: f64,
}

/// The rows, ordered by database then user. `names` resolves a client's
/// pool index; `now_micros` is on the clock of the clients' wait stamps.
/// A pool shows once a client has come for it or a connection holds it.
pub fn rows(
    clients: &[ClientView],
    names: impl Fn(u32) -> Option<(String, String)>,
    slots: &[SlotRow],
    now_micros: u64,
) -> Vec<PoolRow> {
    let mut pools: BTreeMap<(String, String), PoolRow> = BTreeMap::new();
    for c in clients {
        let Some((database, user)) = names(c.pool) else { continue };
        let r = row(&mut pools, &database, &user);
        match c.waiting_since {
            Some(since) => {
                r.cl_waiting += 1;
                r.maxwait = r.maxwait.max(now_micros.saturating_sub(since) as f64 / 1e6);
            }
            None if c.logged_in => r.cl_active += 1,
            None => {}
        }
    }
    for s in slots {
        let (active, idle) = match s.state {
            "in_use" | "gracefully" => (1, 0),
            "free" => (0, 1),
            _ => continue,
        };
        let r = row(&mut pools, &s.database, &s.user);
        r.sv_active += active;
        r.sv_idle += idle;
    }
    pools.into_values().collect()
}

fn row<'p>(pools: &'p mut BTreeMap<(String, String), PoolRow>, database: &str, user: &str) -> &'p mut PoolRow {
    pools.entry((database.to_string(), user.to_string())).or_insert_with(|| PoolRow {
        database: database.to_string(),
        user: user.to_string(),
        ..PoolRow::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(state: &'static str, database: &str, user: &str) -> SlotRow {
        SlotRow { id: 0, state, user: user.into(), database: database.into(), appname: String::new(), queries: 0 }
    }

    #[test]
    fn clients_and_connections_count_in_their_pool() {
        let names = |p: u32| match p {
            1 => Some(("app".to_string(), "alice".to_string())),
            2 => Some(("app".to_string(), "bob".to_string())),
            _ => None,
        };
        let c = |pool, logged_in, waiting_since| ClientView { pool, logged_in, waiting_since };
        let clients = [
            c(1, true, None),
            c(1, true, Some(1_000_000)),
            c(1, true, Some(2_500_000)),
            c(2, false, None),
            c(0, false, None),
            c(9, true, None),
        ];
        let slots = [
            slot("in_use", "app", "alice"),
            slot("free", "app", "alice"),
            slot("free", "app", "alice"),
            slot("gracefully", "other", "carol"),
            slot("init", "app", "bob"),
            slot("not_init", "", ""),
        ];
        let rows = rows(&clients, names, &slots, 4_000_000);
        assert_eq!(rows.len(), 3, "{rows:?}");
        let alice = &rows[0];
        assert_eq!((alice.database.as_str(), alice.user.as_str()), ("app", "alice"));
        assert_eq!((alice.cl_active, alice.cl_waiting, alice.sv_active, alice.sv_idle), (1, 2, 1, 2));
        assert!((alice.maxwait - 3.0).abs() < 1e-9, "{}", alice.maxwait);
        let bob = &rows[1];
        assert_eq!((bob.user.as_str(), bob.cl_active, bob.cl_waiting, bob.sv_active, bob.sv_idle), ("bob", 0, 0, 0, 0));
        let carol = &rows[2];
        assert_eq!((carol.database.as_str(), carol.sv_active, carol.maxwait), ("other", 1, 0.0));
    }
}
