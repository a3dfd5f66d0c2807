//! Serves the OpenAPI 3.1 description in `openapi/openapi.json` and lists the routes the server
//! registers, so a test can check that the two agree.

use actix_web::HttpResponse;

/// The OpenAPI document, as committed in `openapi/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../openapi/openapi.json");

pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(OPENAPI_JSON)
}

/// Every `(METHOD, path)` the server registers, paths in OpenAPI template form.
pub fn registered_routes() -> Vec<(String, String)> {
    crate::routes::route_table().into_iter().map(|(path, method, _)| (method.to_string(), path.to_string())).collect()
}
