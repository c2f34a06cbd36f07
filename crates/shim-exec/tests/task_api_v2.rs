//! containerd 1.x calls the task API as `containerd.task.v2.Task`: the shim answers under that
//! name as under v3, with the same implementation (same shim pid, same task state).

mod common;

use common::{ctx, Lab};
use containerd_shim_protos::api::{ConnectRequest, ConnectResponse, StateRequest, StateResponse};
use containerd_shim_protos::protobuf::Message;
use shim_exec::task_api::{TASK_SERVICE_V2, TASK_SERVICE_V3};

/// Calls `/<service>/<method>` with `req` over a raw ttrpc client and returns the answer's bytes.
async fn call(
    client: &ttrpc::r#async::Client,
    service: &str,
    method: &str,
    req: &impl Message,
) -> ttrpc::Result<Vec<u8>> {
    let c = ctx();
    let mut request = ttrpc::proto::Request::new();
    request.service = service.into();
    request.method = method.into();
    request.timeout_nano = c.timeout_nano;
    request.metadata = ttrpc::context::to_pb(c.metadata);
    request.payload = req.write_to_bytes().expect("encode");
    Ok(client.request(request).await?.payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_api_answers_as_v2_and_v3() {
    let lab = Lab::new();
    let mut shim = lab.start_shim("pod-v2", None).await;
    let client = ttrpc::r#async::Client::connect(&shim.address)
        .await
        .expect("connect");

    let v2 = call(&client, TASK_SERVICE_V2, "Connect", &ConnectRequest::new())
        .await
        .expect("v2 Connect");
    let v2 = ConnectResponse::parse_from_bytes(&v2).expect("ConnectResponse");
    assert_eq!(v2.shim_pid, shim.pid, "same daemon answers v2");

    let init = shim.run_sleeper(&lab, "ctr-v2").await;
    for service in [TASK_SERVICE_V2, TASK_SERVICE_V3] {
        let req = StateRequest {
            id: "ctr-v2".into(),
            ..Default::default()
        };
        let state = call(&client, service, "State", &req)
            .await
            .unwrap_or_else(|e| panic!("{service} State: {e}"));
        let state = StateResponse::parse_from_bytes(&state).expect("StateResponse");
        assert_eq!(state.pid, init, "{service} sees the task");
    }

    // A name neither version has is still refused, as before.
    let err = call(
        &client,
        "containerd.task.v1.Task",
        "Connect",
        &ConnectRequest::new(),
    )
    .await
    .expect_err("v1 is not served");
    assert!(err.to_string().contains("does not exist"), "{err}");
    shim.teardown().await;
}
