//! Issue 3, acceptance 5: tenant creation, token rotation and revocation made through one node
//! take effect on every node as soon as the change is acknowledged, for HTTP requests and for
//! syslog messages that carry the token (over RELP, which answers each message).

use std::time::Duration;

use chaos_tests::{find_binary, Cluster, ClusterSpec, Error, RelpSession};
use serde_json::json;

/// Whether `token` is accepted by node `id` (a search; 401 means refused).
fn accepted(cluster: &Cluster, id: u64, token: &str) -> bool {
    match cluster
        .client()
        .local_total(&cluster.node(id).url(), token, "*")
    {
        Ok(_) => true,
        Err(Error::Status { status: 401, .. }) => false,
        Err(e) => panic!("node {id}: {e}"),
    }
}

/// The RELP answer of node `id` to a message naming `tenant` with `token`: 200 when stored.
fn relp_answer(cluster: &Cluster, id: u64, tenant: &str, token: &str) -> (u16, String) {
    let mut session = RelpSession::open(cluster.node(id).relp).unwrap();
    let message =
        format!("<14>1 - host app - - [meniscus tenant=\"{tenant}\" token=\"{token}\"] hello");
    session.publish(&message).unwrap()
}

#[test]
fn tenant_and_token_changes_take_effect_everywhere_once_acknowledged() {
    let spec = ClusterSpec::new(3, find_binary().unwrap());
    let cluster = Cluster::start(&spec).unwrap();
    cluster.wait_leader(Duration::from_secs(10)).unwrap();
    let ids: Vec<u64> = (1..=3).collect();
    for round in 0..12u64 {
        // Changes go through every node in turn: followers forward them to the leader.
        let creator = ids[(round % 3) as usize];
        let name = format!("tenant-{round}");
        let token = cluster.create_tenant(creator, &name).unwrap();
        for id in &ids {
            assert!(
                accepted(&cluster, *id, &token),
                "round {round}: node {id} refused the token of a tenant created through node {creator}"
            );
        }
        let rotator = ids[((round + 1) % 3) as usize];
        let rotated = cluster
            .client()
            .post_json(
                &cluster.node(rotator).url(),
                &format!("/v1/tenants/{name}/tokens"),
                cluster.admin_token(),
                &json!({"grace_seconds": 0}),
            )
            .unwrap();
        let new_token = rotated["token"].as_str().unwrap();
        // Syslog first: it must not profit from the HTTP checks having caught the node up.
        let (code, text) = relp_answer(&cluster, creator, &name, &token);
        assert_eq!(
            (code, text.contains("invalid, revoked or expired token")),
            (500, true),
            "round {round}: node {creator} stored a syslog message with a token revoked through node {rotator}: {text}"
        );
        for id in &ids {
            assert!(
                !accepted(&cluster, *id, &token),
                "round {round}: node {id} accepted a token revoked through node {rotator}"
            );
            assert!(
                accepted(&cluster, *id, new_token),
                "round {round}: node {id} refused the new token"
            );
        }
        let (code, text) = relp_answer(&cluster, creator, &name, new_token);
        assert_eq!(code, 200, "round {round}: the new token over RELP: {text}");
    }
    // The admin's view agrees on every node.
    for id in &ids {
        let listed = cluster
            .client()
            .get_json(
                &cluster.node(*id).url(),
                "/v1/tenants",
                cluster.admin_token(),
            )
            .unwrap();
        assert_eq!(
            listed["tenants"].as_array().unwrap().len(),
            13,
            "node {id}: {listed}"
        );
    }
}
