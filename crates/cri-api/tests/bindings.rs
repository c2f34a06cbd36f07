//! The generated bindings carry the upstream field numbers and both service sides.

use cri_api::runtime::v1::{
    image_service_client::ImageServiceClient, image_service_server::ImageServiceServer,
    runtime_service_client::RuntimeServiceClient, runtime_service_server::RuntimeServiceServer,
    ExecRequest, ExecSyncResponse,
};
use prost::Message;

#[test]
fn exec_request_uses_upstream_field_numbers() {
    let req = ExecRequest {
        container_id: "c".into(),
        cmd: vec!["sh".into()],
        tty: true,
        stdin: true,
        stdout: false,
        stderr: false,
    };
    // container_id=1 (len), cmd=2 (len), tty=3 (varint), stdin=4 (varint)
    assert_eq!(
        req.encode_to_vec(),
        vec![0x0a, 1, b'c', 0x12, 2, b's', b'h', 0x18, 1, 0x20, 1]
    );
    let resp = ExecSyncResponse::decode(&[0x0a, 1, b'x', 0x18, 3][..]).expect("decode");
    assert_eq!(resp.stdout, b"x");
    assert_eq!(resp.exit_code, 3);
}

#[test]
fn client_and_server_types_are_generated() {
    fn names<T>() -> &'static str {
        std::any::type_name::<T>()
    }
    assert!(
        names::<RuntimeServiceClient<tonic::transport::Channel>>().contains("RuntimeServiceClient")
    );
    assert!(names::<ImageServiceClient<tonic::transport::Channel>>().contains("ImageServiceClient"));
    assert_eq!(
        <RuntimeServiceServer<()> as tonic::server::NamedService>::NAME,
        "runtime.v1.RuntimeService"
    );
    assert_eq!(
        <ImageServiceServer<()> as tonic::server::NamedService>::NAME,
        "runtime.v1.ImageService"
    );
}

/// A server that implements nothing still compiles: every RPC has an Unimplemented default.
#[tokio::test]
async fn unimplemented_rpcs_answer_unimplemented() {
    use cri_api::runtime::v1::runtime_service_server::RuntimeService;
    use cri_api::runtime::v1::VersionRequest;

    struct Nothing;
    #[tonic::async_trait]
    impl RuntimeService for Nothing {}

    let err = Nothing
        .version(tonic::Request::new(VersionRequest::default()))
        .await
        .expect_err("default stub");
    assert_eq!(err.code(), tonic::Code::Unimplemented);
}
