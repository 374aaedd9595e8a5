use super::*;

fn snapshot() -> Snapshot {
    let mut counters = [0u64; EVENTS];
    counters[Event::ConnectionGet as usize] = 7;
    counters[Event::LogWarn as usize] = 2;
    counters[Event::RestartIdle as usize] = 1;
    Snapshot {
        state: 1,
        pipeline: 1,
        max_connections: 4,
        active: 1,
        total: 2,
        slots: vec![
            SlotRow { id: 0, state: "in_use", user: "u".into(), database: "db".into(), appname: "psql".into() },
            SlotRow { id: 1, state: "not_init", user: String::new(), database: String::new(), appname: String::new() },
        ],
        limits: vec![LimitRow {
            database: "db".into(),
            user: "u".into(),
            min: 1,
            initial: 2,
            max: 3,
            active: 1,
            awaiting: 4,
        }],
        awaiting: 5,
        clients_active: 3,
        last_wait: 0.25,
        servers: vec![("primary".into(), "Primary"), ("replica".into(), "Failed")],
        counters,
        histograms: Histogram::ALL
            .iter()
            .map(|&h| (h, HistogramTotals { cumulative: vec![1; h.bounds().len()], sum_seconds: 0.5, count: 2 }))
            .collect(),
        os: ("Linux".into(), 6, 1, 0),
    }
}

#[test]
fn every_family_has_help_and_type_and_upstream_labels() {
    let text = render(&snapshot());
    for (name, _) in families() {
        assert!(text.contains(&format!("# HELP {name} ")), "no HELP for {name}");
        assert!(text.contains(&format!("# TYPE {name} ")), "no TYPE for {name}");
    }
    for line in [
        "pgagroal_state 1",
        "pgagroal_pipeline_mode 1",
        "pgagroal_connection{id=\"0\",user=\"u\",database=\"db\",application_name=\"psql\",state=\"in_use\"} 1",
        "pgagroal_connection{id=\"1\",user=\"\",database=\"\",application_name=\"\",state=\"not_init\"} 0",
        "pgagroal_limit{user=\"u\",database=\"db\",type=\"max\"} 3",
        "pgagroal_limit{user=\"u\",database=\"db\",type=\"active\"} 1",
        "pgagroal_limit_awaiting{user=\"u\",database=\"db\"} 4",
        "pgagroal_connection_awaiting 5",
        "pgagroal_client_wait 5",
        "pgagroal_client_active 3",
        "pgagroal_wait_time 0.25",
        "pgagroal_connection_get 7",
        "pgagroal_logging_warn 2",
        "pgagroal_failed_servers 1",
        "pgagroal_server_error{name=\"replica\",state=\"Failed\"} 1",
        "pgagroal_actor_restarts_total{actor=\"idle\"} 1",
        "pgagroal_os_info{os=\"Linux\",major=\"6\",minor=\"1\",patch=\"0\"} 1",
        "# TYPE pgagroal_max_connections counter",
        "pgagroal_client_wait_seconds_bucket{le=\"0.0001\"} 1",
        "pgagroal_client_wait_seconds_bucket{le=\"+Inf\"} 2",
        "pgagroal_client_wait_seconds_sum 0.5",
        "pgagroal_client_wait_seconds_count 2",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    // Each family appears once.
    let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let mut unique = types.clone();
    unique.dedup();
    assert_eq!(types.len(), unique.len());
    assert!(index_html().contains("pgagroal_connection_awaiting"));
}
