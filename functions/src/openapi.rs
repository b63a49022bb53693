//! The OpenAPI document's frame: title, tags and security schemes. Its paths and schemas come from
//! the route annotations (see `routes`); [`complete`] then adds what holds for every route alike
//! (the instance name's pattern, the answers of the authentication layer, the rate-limit headers)
//! and what utoipa's annotations cannot say (conditions between fields), so that no annotation can
//! leave them out.

use std::collections::BTreeMap;

use ryze_core::domain::InstanceName;
use ryze_core::service::{CreateInstance, ProxyInput, S3Input, WebhookInput};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
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

/// Routes an instance token may not call at all: their 401 comes before any instance is compared.
const ACCOUNT_ONLY_INSTANCE_ROUTES: [&str; 1] = ["/api/instance/delete/{instance}"];

/// Completes the document collected from the routes (see the module docs).
pub fn complete(document: &mut utoipa::openapi::OpenApi) {
    for (path, item) in &mut document.paths.paths {
        for operation in operations(item) {
            if path.contains("{instance}") {
                constrain_instance_parameter(operation);
                let responses = &mut operation.responses.responses;
                add_error(responses, "400", "Invalid instance name (or a name missing from the path)");
                if !ACCOUNT_ONLY_INSTANCE_ROUTES.contains(&path.as_str()) {
                    add_error(responses, "403", "Instance token does not match this instance");
                }
                add_error(responses, "404", "Instance not found");
            }
            if path.starts_with("/api/") {
                let responses = &mut operation.responses.responses;
                add_error(responses, "401", "Missing token in header, or Invalid token");
                add_error(responses, "429", "Rate limit exceeded. Try again later.");
                add_rate_limit_headers(responses);
            }
        }
    }
    let components = document.components.get_or_insert_with(Components::default);
    require_when_enabled(components, "CreateInstance", CreateInstance::REQUIRED_WHEN_ENABLED);
    require_when_enabled(components, "ProxyInput", ProxyInput::REQUIRED_WHEN_ENABLED);
    require_when_enabled(components, "S3Input", S3Input::REQUIRED_WHEN_ENABLED);
    require_when_enabled(components, "WebhookInput", WebhookInput::REQUIRED_WHEN_ENABLED);
    redeliver_one_thing(components);
    // utoipa's `min_properties` attribute writes `maxProperties` (utoipa-gen 5.5).
    if let Some(RefOr::T(Schema::Object(patch))) = components.schemas.get_mut("SettingsPatch") {
        patch.min_properties = Some(1);
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn constrain_instance_parameter(operation: &mut Operation) {
    let parameters = operation.parameters.iter_mut().flatten();
    for parameter in parameters.filter(|p| p.name == "instance" && p.parameter_in == ParameterIn::Path) {
        let name = ObjectBuilder::new().schema_type(Type::String).pattern(Some(InstanceName::PATTERN));
        parameter.schema = Some(name.into());
    }
}

/// Documents an error answer the route's annotation left out.
fn add_error(responses: &mut BTreeMap<String, RefOr<Response>>, status: &str, description: &str) {
    responses.entry(status.to_owned()).or_insert_with(|| {
        let body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
        ResponseBuilder::new().description(description).content("application/json", body).build().into()
    });
}

/// The headers of every answer to an authenticated request; a request refused for its token (401)
/// was never counted, so it has none.
fn add_rate_limit_headers(responses: &mut BTreeMap<String, RefOr<Response>>) {
    let integer = |description: &str| {
        let schema = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0));
        HeaderBuilder::new().schema(schema).description(Some(description)).build()
    };
    for (status, response) in responses.iter_mut().filter(|(status, _)| *status != "401") {
        let RefOr::T(response) = response else { continue };
        let headers = &mut response.headers;
        headers.insert("X-RateLimit-Limit".into(), integer("Requests allowed in the current minute"));
        headers.insert("X-RateLimit-Remaining".into(), integer("Requests left in the current minute"));
        headers.insert("X-RateLimit-Reset".into(), integer("When the current window ends, in unix seconds"));
        if status == "429" {
            headers.insert("Retry-After".into(), integer("Seconds until the next window"));
        }
    }
}

/// Says in the schema `name` what its validation says: once `flag` is `true`, its fields must be
/// sent, not empty. The object stays the first item of an `allOf`; each flag adds an `anyOf` of
/// "the flag is true and its fields are there" and "the flag is false, null or absent".
fn require_when_enabled(components: &mut Components, name: &str, requirements: &[(&str, &[&str])]) {
    let Some(RefOr::T(Schema::Object(object))) = components.schemas.get(name) else {
        return;
    };
    let mut all_of = AllOfBuilder::new().item(object.clone());
    for (flag, fields) in requirements {
        let mut enabled = ObjectBuilder::new()
            .property(*flag, ObjectBuilder::new().schema_type(SchemaType::AnyValue).enum_values(Some([true])))
            .required(*flag);
        for field in *fields {
            enabled = enabled.property(*field, present(object.properties.get(*field))).required(*field);
        }
        let disabled = ObjectBuilder::new().property(
            *flag,
            ObjectBuilder::new()
                .schema_type(SchemaType::AnyValue)
                .enum_values(Some([serde_json::Value::Bool(false), serde_json::Value::Null])),
        );
        all_of = all_of.item(AnyOfBuilder::new().item(enabled).item(disabled));
    }
    components.schemas.insert(name.to_owned(), RefOr::T(Schema::AllOf(all_of.build())));
}

/// A redelivery names one event (`id`) or every dead delivery (`status: "dead"`), never both and
/// never neither (`InstanceService::redeliver`).
fn redeliver_one_thing(components: &mut Components) {
    let Some(RefOr::T(Schema::Object(object))) = components.schemas.get("RedeliverInput") else {
        return;
    };
    let absent = || ObjectBuilder::new().schema_type(Type::Null);
    let one_event = ObjectBuilder::new()
        .property("id", ObjectBuilder::new().schema_type(Type::String))
        .required("id")
        .property("status", absent());
    let dead = ObjectBuilder::new()
        .property("status", ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["dead"])))
        .required("status")
        .property("id", absent());
    let choice = OneOfBuilder::new().item(one_event).item(dead);
    let all_of = AllOfBuilder::new().item(object.clone()).item(choice);
    components.schemas.insert("RedeliverInput".into(), RefOr::T(Schema::AllOf(all_of.build())));
}

/// A value of the field's own type that counts as sent: not null, and not an empty string.
fn present(property: Option<&RefOr<Schema>>) -> ObjectBuilder {
    let types = match property {
        Some(RefOr::T(Schema::Object(object))) => match &object.schema_type {
            SchemaType::Type(kind) => vec![kind.clone()],
            SchemaType::Array(kinds) => kinds.clone(),
            SchemaType::AnyValue => vec![],
        },
        // A port: a string or a number.
        Some(RefOr::T(Schema::OneOf(_))) => vec![Type::String, Type::Integer],
        _ => vec![],
    };
    let types: Vec<Type> = types.into_iter().filter(|kind| *kind != Type::Null).collect();
    let present = ObjectBuilder::new().schema_type(SchemaType::from_iter(types.iter().cloned()));
    if types.contains(&Type::String) { present.min_length(Some(1)) } else { present }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn document() -> Value {
        serde_json::to_value(crate::openapi()).expect("the document serialises")
    }

    fn operations(document: &Value) -> Vec<(String, String, Value)> {
        let mut all = Vec::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                all.push((path.clone(), method.clone(), operation.clone()));
            }
        }
        all
    }

    #[test]
    fn every_instance_route_documents_the_name_and_the_errors_of_its_layer() {
        let document = document();
        let mut seen = 0;
        for (path, method, operation) in
            operations(&document).into_iter().filter(|(p, ..)| p.contains("{instance}"))
        {
            seen += 1;
            let parameter =
                operation["parameters"].as_array().and_then(|ps| ps.iter().find(|p| p["name"] == "instance"));
            let schema = &parameter.expect("the instance parameter")["schema"];
            assert_eq!(schema["pattern"], InstanceName::PATTERN, "{method} {path}");
            let mut statuses = vec!["400", "401", "404", "429"];
            if !ACCOUNT_ONLY_INSTANCE_ROUTES.contains(&path.as_str()) {
                statuses.push("403");
            }
            for status in statuses {
                assert!(operation["responses"].get(status).is_some(), "{method} {path} has no {status}");
            }
        }
        assert!(seen >= 10, "only {seen} instance routes");
        let delete = &document["paths"]["/api/instance/delete/{instance}"]["delete"]["responses"]["401"];
        let create = &document["paths"]["/api/instance/new"]["post"]["responses"]["401"];
        for description in [&delete["description"], &create["description"]] {
            assert!(description.as_str().unwrap().contains("Invalid account token"), "{description}");
        }
        let connect = &document["paths"]["/api/instance/connect/{instance}"]["get"]["responses"];
        assert_eq!(connect["500"]["description"], "Failed to generate QR code");
    }

    #[test]
    fn every_answer_to_an_authenticated_request_documents_the_rate_limit_headers() {
        let document = document();
        for (path, method, operation) in
            operations(&document).into_iter().filter(|(p, ..)| p.starts_with("/api/"))
        {
            for (status, response) in operation["responses"].as_object().expect("responses") {
                let headers = &response["headers"];
                if status == "401" {
                    assert!(headers.is_null(), "{method} {path} {status}: refused before counting");
                    continue;
                }
                for header in ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"] {
                    assert_eq!(
                        headers[header]["schema"]["type"], "integer",
                        "{method} {path} {status} {header}"
                    );
                }
                assert_eq!(headers.get("Retry-After").is_some(), status == "429", "{method} {path} {status}");
            }
        }
    }

    #[test]
    fn request_bodies_say_what_is_required() {
        let document = document();
        let schemas = &document["components"]["schemas"];
        let create = &schemas["CreateInstance"]["allOf"];
        assert_eq!(create[0]["required"], serde_json::json!(["name"]));
        assert_eq!(create[0]["properties"]["name"]["type"], "string", "not nullable");
        assert_eq!(create[0]["properties"]["name"]["pattern"], InstanceName::PATTERN);
        assert_eq!(create[0]["additionalProperties"], false);
        // One condition per inline integration: enabled, its fields are there.
        assert_eq!(create.as_array().unwrap().len(), 1 + CreateInstance::REQUIRED_WHEN_ENABLED.len());
        let proxy = &create[1]["anyOf"];
        assert_eq!(
            proxy[0]["required"],
            serde_json::json!(["proxyEnabled", "proxyHost", "proxyPort", "proxyProtocol"])
        );
        assert_eq!(proxy[0]["properties"]["proxyEnabled"], serde_json::json!({"enum": [true]}));
        assert_eq!(proxy[1]["properties"]["proxyEnabled"], serde_json::json!({"enum": [false, null]}));
        for name in ["ProxyInput", "S3Input"] {
            let object = &schemas[name]["allOf"][0];
            assert_eq!(object["required"], serde_json::json!(["enabled"]), "{name}");
            assert_eq!(object["properties"]["enabled"]["type"], "boolean", "{name}");
        }
        let patch = &schemas["SettingsPatch"];
        assert_eq!(patch["minProperties"], 1);
        assert!(patch.get("maxProperties").is_none());
        assert_eq!(patch["properties"]["keepOnlineStatus"]["type"], "boolean", "not nullable");
    }
}
