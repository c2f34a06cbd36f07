//! The CRI gRPC services (`runtime.v1.RuntimeService`, `runtime.v1.ImageService`) as thin
//! adapters over [`Runtime`]: unwrap the request, take `traceparent` from the metadata, map a
//! [`CriError`](crate::runtime::CriError) to its gRPC status. RPCs not listed here answer
//! Unimplemented (cri-api's default stubs).

use std::sync::Arc;

use cri_api::runtime::v1::image_service_server::ImageService;
use cri_api::runtime::v1::runtime_service_server::RuntimeService;
use cri_api::runtime::v1::{
    AttachRequest, AttachResponse, ContainerStatusRequest, ContainerStatusResponse,
    CreateContainerRequest, CreateContainerResponse, ExecRequest, ExecResponse, ExecSyncRequest,
    ExecSyncResponse, Image, ImageFsInfoRequest, ImageFsInfoResponse, ImageSpec,
    ImageStatusRequest, ImageStatusResponse, ListContainersRequest, ListContainersResponse,
    ListImagesRequest, ListImagesResponse, ListPodSandboxRequest, ListPodSandboxResponse,
    PodSandboxStatusRequest, PodSandboxStatusResponse, PullImageRequest, PullImageResponse,
    RemoveContainerRequest, RemoveContainerResponse, RemoveImageRequest, RemoveImageResponse,
    RemovePodSandboxRequest, RemovePodSandboxResponse, RunPodSandboxRequest, RunPodSandboxResponse,
    RuntimeCondition, RuntimeStatus, StartContainerRequest, StartContainerResponse, StatusRequest,
    StatusResponse, StopContainerRequest, StopContainerResponse, StopPodSandboxRequest,
    StopPodSandboxResponse, VersionRequest, VersionResponse,
};
use hop_kit::TraceParent;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::images::Image as ConfiguredImage;
use crate::runtime::Runtime;

/// The CRI API version this runtime speaks.
pub const RUNTIME_API_VERSION: &str = "v1";
/// What `Version` reports as the runtime's name.
pub const RUNTIME_NAME: &str = "execlab-cri-streaming";

/// Both CRI services over one [`Runtime`].
#[derive(Clone)]
pub struct CriService {
    runtime: Arc<Runtime>,
}

impl CriService {
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Self { runtime }
    }
}

fn trace_of<T>(req: &Request<T>) -> Option<TraceParent> {
    req.metadata()
        .get(hop_kit::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl RuntimeService for CriService {
    async fn version(&self, _: Request<VersionRequest>) -> Reply<VersionResponse> {
        Ok(Response::new(VersionResponse {
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: RUNTIME_API_VERSION.into(),
        }))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Reply<StatusResponse> {
        let condition = |t: &str| RuntimeCondition {
            r#type: t.into(),
            status: true,
            ..Default::default()
        };
        Ok(Response::new(StatusResponse {
            status: Some(RuntimeStatus {
                // Pods use the host network only, so the network is as ready as the host.
                conditions: vec![condition("RuntimeReady"), condition("NetworkReady")],
            }),
            ..Default::default()
        }))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<RunPodSandboxRequest>,
    ) -> Reply<RunPodSandboxResponse> {
        let req = req.into_inner();
        let config = req.config.unwrap_or_default();
        let id = self
            .runtime
            .run_pod_sandbox(config, req.runtime_handler)
            .await?;
        Ok(Response::new(RunPodSandboxResponse { pod_sandbox_id: id }))
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<StopPodSandboxRequest>,
    ) -> Reply<StopPodSandboxResponse> {
        self.runtime
            .stop_pod_sandbox(&req.into_inner().pod_sandbox_id)
            .await?;
        Ok(Response::new(StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<RemovePodSandboxRequest>,
    ) -> Reply<RemovePodSandboxResponse> {
        self.runtime
            .remove_pod_sandbox(&req.into_inner().pod_sandbox_id)
            .await?;
        Ok(Response::new(RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<PodSandboxStatusRequest>,
    ) -> Reply<PodSandboxStatusResponse> {
        let status = self
            .runtime
            .pod_sandbox_status(&req.into_inner().pod_sandbox_id)?;
        Ok(Response::new(PodSandboxStatusResponse {
            status: Some(status),
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<ListPodSandboxRequest>,
    ) -> Reply<ListPodSandboxResponse> {
        let filter = req.into_inner().filter;
        Ok(Response::new(ListPodSandboxResponse {
            items: self.runtime.list_pod_sandbox(filter.as_ref()),
        }))
    }

    async fn create_container(
        &self,
        req: Request<CreateContainerRequest>,
    ) -> Reply<CreateContainerResponse> {
        let req = req.into_inner();
        let id = self
            .runtime
            .create_container(
                &req.pod_sandbox_id,
                req.config.unwrap_or_default(),
                req.sandbox_config,
            )
            .await?;
        Ok(Response::new(CreateContainerResponse { container_id: id }))
    }

    async fn start_container(
        &self,
        req: Request<StartContainerRequest>,
    ) -> Reply<StartContainerResponse> {
        self.runtime
            .start_container(&req.into_inner().container_id)
            .await?;
        Ok(Response::new(StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        req: Request<StopContainerRequest>,
    ) -> Reply<StopContainerResponse> {
        let req = req.into_inner();
        self.runtime
            .stop_container(&req.container_id, req.timeout)
            .await?;
        Ok(Response::new(StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<RemoveContainerRequest>,
    ) -> Reply<RemoveContainerResponse> {
        self.runtime
            .remove_container(&req.into_inner().container_id)
            .await?;
        Ok(Response::new(RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Reply<ListContainersResponse> {
        let filter = req.into_inner().filter;
        Ok(Response::new(ListContainersResponse {
            containers: self.runtime.list_containers(filter.as_ref()),
        }))
    }

    async fn container_status(
        &self,
        req: Request<ContainerStatusRequest>,
    ) -> Reply<ContainerStatusResponse> {
        let status = self
            .runtime
            .container_status(&req.into_inner().container_id)?;
        Ok(Response::new(ContainerStatusResponse {
            status: Some(status),
            ..Default::default()
        }))
    }

    async fn exec_sync(&self, req: Request<ExecSyncRequest>) -> Reply<ExecSyncResponse> {
        let trace = trace_of(&req).unwrap_or_else(TraceParent::new_root);
        let span = hop_kit::exec_session_span(&trace);
        let resp = self
            .runtime
            .exec_sync(req.into_inner(), Some(&trace))
            .instrument(span)
            .await?;
        Ok(Response::new(resp))
    }

    async fn exec(&self, req: Request<ExecRequest>) -> Reply<ExecResponse> {
        let trace = trace_of(&req);
        let url = self.runtime.exec_url(req.into_inner(), trace)?;
        if let Some(trace) = &trace {
            hop_kit::exec_session_span(trace)
                .in_scope(|| tracing::info!(event = "cri_exec", "streaming URL issued"));
        }
        Ok(Response::new(ExecResponse { url }))
    }

    async fn attach(&self, req: Request<AttachRequest>) -> Reply<AttachResponse> {
        let trace = trace_of(&req);
        let url = self.runtime.attach_url(req.into_inner(), trace)?;
        Ok(Response::new(AttachResponse { url }))
    }
}

fn cri_image(image: &ConfiguredImage) -> Image {
    Image {
        id: image.id.clone(),
        repo_tags: vec![image.reference.clone()],
        spec: Some(ImageSpec {
            image: image.reference.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The image service answers for the configured images; nothing is ever pulled.
#[tonic::async_trait]
impl ImageService for CriService {
    async fn list_images(&self, req: Request<ListImagesRequest>) -> Reply<ListImagesResponse> {
        let wanted = req
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image);
        let images = self
            .runtime
            .images
            .all()
            .iter()
            .filter(|i| match &wanted {
                Some(name) if !name.is_empty() => self.runtime.images.resolve(name) == Some(*i),
                _ => true,
            })
            .map(cri_image)
            .collect();
        Ok(Response::new(ListImagesResponse { images }))
    }

    async fn image_status(&self, req: Request<ImageStatusRequest>) -> Reply<ImageStatusResponse> {
        let name = req.into_inner().image.map(|i| i.image).unwrap_or_default();
        Ok(Response::new(ImageStatusResponse {
            image: self.runtime.images.resolve(&name).map(cri_image),
            ..Default::default()
        }))
    }

    async fn pull_image(&self, req: Request<PullImageRequest>) -> Reply<PullImageResponse> {
        let name = req.into_inner().image.map(|i| i.image).unwrap_or_default();
        match self.runtime.images.resolve(&name) {
            Some(image) => Ok(Response::new(PullImageResponse {
                image_ref: image.id.clone(),
            })),
            None => Err(Status::not_found(format!(
                "failed to pull and unpack image {:?}: not configured (cri-streaming --image): not found",
                crate::images::normalize(&name)
            ))),
        }
    }

    async fn remove_image(&self, _: Request<RemoveImageRequest>) -> Reply<RemoveImageResponse> {
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn image_fs_info(&self, _: Request<ImageFsInfoRequest>) -> Reply<ImageFsInfoResponse> {
        Ok(Response::new(ImageFsInfoResponse::default()))
    }
}
