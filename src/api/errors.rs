//! Tenant, catalog and validation errors as API errors (status and code).

use crate::catalog::CatalogError;
use crate::http::error::{ApiError, Details};
use crate::model::ValidationError;
use crate::tenant::{RecommendError, TenantError};

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> ApiError {
        ApiError::Invalid { message: e.to_string(), details: Details::Fields(e.0) }
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> ApiError {
        match e {
            CatalogError::Invalid(v) => v.into(),
            CatalogError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            CatalogError::Conflict(m) => ApiError::Conflict(m),
        }
    }
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> ApiError {
        match e {
            TenantError::Catalog(c) => c.into(),
            TenantError::NotFound(m) => ApiError::NotFound(m),
            TenantError::Conflict(m) => ApiError::Conflict(m),
            TenantError::VersionMismatch(m) => ApiError::PreconditionFailed(m),
            TenantError::Plugin { name, diagnostics, .. } => ApiError::Invalid {
                message: format!("{name} has {} problem(s); nothing changed", diagnostics.len()),
                details: Details::Diagnostics(diagnostics),
            },
            TenantError::Store(s) if s.is_disk_full() => ApiError::InsufficientStorage(
                "the disk is full: the change was not made (reads and decisions still work); free space and retry"
                    .into(),
            ),
            TenantError::Store(crate::store::StoreError::Conflict(m)) => ApiError::Conflict(m),
            TenantError::Store(crate::store::StoreError::Replication(m)) => ApiError::Unavailable(m),
            TenantError::Store(s) => ApiError::internal("storage", &s),
            TenantError::Unavailable(m) => ApiError::Unavailable(m),
            TenantError::Internal(m) => ApiError::internal("tenant", &m),
        }
    }
}

impl From<RecommendError> for ApiError {
    fn from(e: RecommendError) -> ApiError {
        match e {
            RecommendError::Invalid(v) => v.into(),
            RecommendError::UnknownFlow(_) => ApiError::NotFound(e.to_string()),
            RecommendError::Unpublished(_) => ApiError::Conflict(e.to_string()),
        }
    }
}
