//! `Observation/$stats` (filled in by the $stats work).

use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::ApiError;
use crate::fhir_http::respond;
use crate::routes::AppState;

type State = web::Data<AppState>;

pub async fn get(req: HttpRequest, state: State) -> HttpResponse {
    let _ = state;
    respond(&req, Err(ApiError::NotImplemented("Observation/$stats".into())))
}

pub async fn post(req: HttpRequest, state: State, body: web::Bytes) -> HttpResponse {
    let _ = (state, body);
    respond(&req, Err(ApiError::NotImplemented("Observation/$stats".into())))
}
