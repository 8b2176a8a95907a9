"""How to log in: the OIDC issuer and client that ``farside login`` uses.

Open, like ``/openapi.json``: it says where to authenticate, and nothing about anyone.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from .deps import RuntimeDep

router = APIRouter(tags=["auth"])


class OidcLogin(BaseModel):
    """What a client needs for the device authorization grant at the gateway's issuer."""

    issuer: str = Field(description="Issuer URL; its discovery document lists the endpoints.")
    client_id: str | None = Field(description="Public client to log in as; none: ask the operator.")
    scopes: list[str] = Field(description="Scopes to ask for.")
    params: dict[str, str] = Field(description="Extra device authorization request parameters.")
    audience: list[str] = Field(description="Audiences the gateway accepts in tokens.")


class AuthInfo(BaseModel):
    """The ways to authenticate at this gateway besides farside's own tokens."""

    oidc: OidcLogin | None = Field(description="OIDC login; none: not configured.")


@router.get("/auth", response_model=AuthInfo)
async def auth_info(rt: RuntimeDep) -> AuthInfo:
    """How to get a token for this gateway (no token needed)."""
    oidc = rt.config.oidc
    if oidc.issuer is None:
        return AuthInfo(oidc=None)
    login = OidcLogin(
        issuer=oidc.issuer,
        client_id=oidc.client_id,
        scopes=oidc.login_scopes,
        params=oidc.login_params,
        audience=oidc.audience,
    )
    return AuthInfo(oidc=login)
