//! `docs/metrics.md` must match the metrics the code registers.
//! Regenerate with `ETHWATCH_BLESS=1 cargo test -p ethwatch --test metrics_doc`.

#[test]
fn metrics_reference_is_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/metrics.md");
    let generated = ethwatch::docs::metrics_markdown();
    if std::env::var_os("ETHWATCH_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write docs/metrics.md");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/metrics.md is stale; run `ETHWATCH_BLESS=1 cargo test -p ethwatch --test metrics_doc` and commit it"
    );
}

#[test]
fn reference_lists_the_contract_names() {
    let md = ethwatch::docs::metrics_markdown();
    for name in [
        "eth_el_up",
        "eth_el_head_block_number",
        "eth_el_head_block_timestamp_seconds",
        "eth_el_head_age_seconds",
        "eth_el_head_gas_used",
        "eth_el_head_gas_limit",
        "eth_el_head_base_fee_per_gas_wei",
        "eth_el_head_transactions",
        "eth_el_blocks_total",
        "eth_el_block_interval_seconds",
        "eth_el_expected_block_interval_seconds",
        "eth_el_reorgs_total",
        "eth_el_reorg_depth",
        "eth_el_finalized_block_number",
        "eth_el_safe_block_number",
        "eth_el_syncing",
        "eth_el_sync_current_block",
        "eth_el_sync_highest_block",
        "eth_el_peers",
        "eth_el_chain_id",
        "eth_el_network_id",
        "eth_el_client_info",
        "eth_el_txpool_transactions",
        "eth_el_rpc_request_duration_seconds",
        "eth_el_rpc_errors_total",
        "eth_el_block_arrival_delay_seconds",
        "ethwatch_collector_duration_seconds",
        "ethwatch_collector_success",
        "ethwatch_collector_last_success_timestamp_seconds",
        "ethwatch_build_info",
        "ethwatch_volume_size_bytes",
        "ethwatch_volume_available_bytes",
    ] {
        assert!(
            md.contains(&format!("| `{name}` |")),
            "{name} missing from the reference"
        );
    }
}
