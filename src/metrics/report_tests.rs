use super::*;

fn snapshot() -> Snapshot {
    let mut counters = [0u64; EVENTS];
    counters[Event::ConnectionGet as usize] = 7;
    counters[Event::LogWarn as usize] = 2;
    counters[Event::RestartIdle as usize] = 1;
    counters[Event::RestartWorker as usize] = 6;
    counters[Event::PreparedEviction as usize] = 3;
    let mut disconnects = [0u64; DISCONNECTS];
    disconnects[Disconnect::PoolFull as usize] = 8;
    Snapshot {
        state: 1,
        pipeline: 1,
        max_connections: 4,
        active: 1,
        total: 2,
        slots: vec![
            SlotRow {
                id: 0,
                state: "in_use",
                user: "u".into(),
                database: "db".into(),
                appname: "psql".into(),
                queries: 9,
            },
            SlotRow {
                id: 1,
                state: "not_init",
                user: String::new(),
                database: String::new(),
                appname: String::new(),
                queries: 0,
            },
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
        client_sockets: 4,
        pools: vec![PoolRow {
            database: "db".into(),
            user: "u".into(),
            cl_active: 2,
            cl_waiting: 1,
            sv_active: 1,
            sv_idle: 0,
            maxwait: 1.5,
        }],
        servers: vec![
            ServerRow {
                name: "primary".into(),
                state: ServerState::Primary,
                facts: ServerReport { errors: 0, health: Health::Up, auth: Some(10), version: Some(15) },
            },
            ServerRow {
                name: "replica".into(),
                state: ServerState::Failed,
                facts: ServerReport { errors: 3, health: Health::Down, auth: None, version: None },
            },
        ],
        counters,
        disconnects,
        histograms: Histogram::ALL
            .iter()
            .map(|&h| (h, HistogramTotals { cumulative: vec![1; h.bounds().len()], sum_seconds: 0.5, count: 2 }))
            .collect(),
        os: ("Linux".into(), 6, 1, 0),
        certs: Vec::new(),
        now_unix: 0,
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
        "pgagroal_server_error{name=\"replica\",state=\"failed\"} 3",
        "pgagroal_server_error{name=\"primary\",state=\"primary\"} 0",
        "pgagroal_server_health{server=\"primary\",auth=\"scram-sha-256\"} 1",
        "pgagroal_server_health{server=\"replica\",auth=\"unknown\"} 0",
        "pgagroal_server_version{server=\"primary\"} 15",
        "pgagroal_server_streaming{name=\"primary\"} -1",
        "pgagroal_server_reset_query_behavior_on_failure 0",
        "pgagroal_connection_query_count{id=\"0\",user=\"u\",database=\"db\",application_name=\"psql\"} 9",
        "pgagroal_client_sockets 4",
        "pgagroal_certificates_total 0",
        "pgagroal_self_sockets 2",
        "pgagroal_pool_cl_active{database=\"db\",user=\"u\"} 2",
        "pgagroal_pool_cl_waiting{database=\"db\",user=\"u\"} 1",
        "pgagroal_pool_sv_active{database=\"db\",user=\"u\"} 1",
        "pgagroal_pool_sv_idle{database=\"db\",user=\"u\"} 0",
        "pgagroal_pool_maxwait_seconds{database=\"db\",user=\"u\"} 1.5",
        "pgagroal_actor_restarts_total{actor=\"idle\"} 1",
        "pgagroal_actor_restarts_total{actor=\"worker\"} 6",
        "pgagroal_client_disconnects_total{reason=\"pool_full\"} 8",
        "pgagroal_prepared_statements_total{event=\"eviction\"} 3",
        "pgagroal_prepared_statements_total{event=\"bind\"} 0",
        "pgagroal_client_disconnects_total{reason=\"client_terminate\"} 0",
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
