//! The client side of the admin service, shared by `tritontube admin` and the console:
//! one way to reach it and one way to send the admin token.

use std::time::Duration;

use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::node::address::with_scheme;
use crate::proto::admin::video_content_admin_service_client::VideoContentAdminServiceClient;
use crate::trust::credential::TOKEN_HEADER;
use crate::trust::tls::ClusterTls;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("invalid admin address {address:?}: {reason}")]
    BadAddress { address: String, reason: String },
    #[error("the admin token must be printable ASCII")]
    BadToken,
}

/// Adds the admin token, when there is one, to every call.
#[derive(Clone)]
pub struct TokenInterceptor(Option<AsciiMetadataValue>);

impl Interceptor for TokenInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert(TOKEN_HEADER, token.clone());
        }
        Ok(request)
    }
}

pub type AdminClient =
    VideoContentAdminServiceClient<InterceptedService<Channel, TokenInterceptor>>;

/// A client of the admin service at `address` (`host:port`, a scheme is accepted). The
/// channel connects lazily, so a dead admin service shows up as failed calls.
pub fn connect(address: &str, token: Option<&str>) -> Result<AdminClient, AdminClientError> {
    connect_tls(address, token, None)
}

/// As [`connect`]; with `tls` (an operator's certificate), over mutual TLS.
pub fn connect_tls(
    address: &str,
    token: Option<&str>,
    tls: Option<&ClusterTls>,
) -> Result<AdminClient, AdminClientError> {
    let bad_address = |e: tonic::transport::Error| AdminClientError::BadAddress {
        address: address.to_string(),
        reason: e.to_string(),
    };
    let endpoint = match tls {
        None => Channel::from_shared(with_scheme(address)),
        Some(_) => Channel::from_shared(crate::trust::tls::url(address, true)),
    }
    .map_err(|e| AdminClientError::BadAddress {
        address: address.to_string(),
        reason: e.to_string(),
    })?;
    let endpoint = match tls {
        None => endpoint,
        Some(tls) => endpoint
            .tls_config(tls.client_config())
            .map_err(bad_address)?,
    };
    let channel = endpoint.connect_timeout(CONNECT_TIMEOUT).connect_lazy();
    let token = token
        .map(|t| AsciiMetadataValue::try_from(t).map_err(|_| AdminClientError::BadToken))
        .transpose()?;
    Ok(VideoContentAdminServiceClient::with_interceptor(
        channel,
        TokenInterceptor(token),
    ))
}
