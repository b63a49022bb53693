//! The OpenAPI document's frame: title, tags and security schemes. Its paths and schemas come from
//! the route annotations (see `routes`).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ryze WhatsApp Instance API",
        description = "Create WhatsApp instances, link each to a phone by QR code or pairing code, watch \
            and control their connection, and configure them. Every error answers \
            `{\"success\": false, \"error\": {\"message\": \"...\"}}`. Every authenticated response carries \
            `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`; over the limit the \
            answer is 429 with `Retry-After`.",
    ),
    tags(
        (name = "Instance", description = "Provision, list and delete instances"),
        (name = "WhatsApp connection", description = "Link, restore and unlink the WhatsApp session"),
        (name = "Instance configuration", description = "Settings, proxy and S3"),
        (name = "Service", description = "Health"),
    ),
    modifiers(&SecuritySchemes),
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "token",
                "A TokenAccount (every instance of the account) or a TokenInstance (its own instance)",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
