"""The identity providers' settings: the ``[oidc]`` and ``[hub]`` tables of the gateway's
configuration (:class:`~farside_gateway.config.GatewayConfig`), which say whose tokens
besides farside's own the gateway accepts: an OIDC issuer's access tokens
(:mod:`.oidc`, :mod:`.introspection`) and JupyterHub's API tokens (:mod:`.hub`). The
reference page documents them from these models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

_ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


class OidcConfig(BaseModel):
    """OIDC access tokens (e.g. from INDIGO IAM): users log in at the issuer with
    ``farside login`` and send its access token; the gateway checks the JWT's signature against the
    issuer's published keys, its issuer, audience and expiry, and takes the user's name and
    groups from its claims; opaque access tokens are checked by introspection at the issuer
    when ``introspection`` is on. Off unless ``issuer`` is set; farside's own tokens work
    either way. See ``docs/how-to/oidc.md``.
    """

    model_config = ConfigDict(extra="forbid")

    issuer: str | None = Field(
        None,
        description="Issuer URL, exactly as in the tokens' `iss` claim; its discovery document "
        "is `<issuer>/.well-known/openid-configuration`. Unset: OIDC tokens are not accepted.",
    )
    audience: list[str] = Field(
        default_factory=list,
        description="Accepted `aud` values; a token must name at least one. Required with "
        "`issuer`, so that tokens the issuer made for other services are refused.",
    )
    username_claim: list[str] = Field(
        default_factory=lambda: ["preferred_username", "sub"],
        description="Claims that name the user, tried in order; the first present wins. "
        "Default: `preferred_username`, then `sub`.",
        json_schema_extra={"doc_default": '`["preferred_username", "sub"]`'},
    )
    groups_claim: str = Field(
        "groups",
        min_length=1,
        description="Claim with the user's groups (a list, or one space-separated string): "
        "fair-share groups, the first one `[fair_share] groups` lists counting. A leading `/` "
        "(IAM's `wlcg.groups`) is dropped.",
    )
    admin_groups: list[str] = Field(default_factory=list, description="Their members are admins.")
    allowed_groups: list[str] = Field(
        default_factory=list,
        description="If set, only members of at least one of these groups may use the gateway.",
    )
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256", "PS256"],
        description=f"Signature algorithms accepted; any of {', '.join(_ASYMMETRIC)}.",
        json_schema_extra={"doc_default": '`["RS256", "ES256", "PS256"]`'},
    )
    leeway: float = Field(
        30.0, ge=0, le=300, description="Seconds of clock skew allowed on `exp`, `nbf`, `iat`."
    )
    jwks_cache_ttl: float = Field(
        3600.0,
        gt=0,
        description="Seconds the issuer's keys are kept; a token signed by a key not among "
        "them fetches them again at once (at most every `jwks_min_refresh` seconds).",
    )
    jwks_min_refresh: float = Field(
        10.0, ge=0, description="Least seconds between two fetches of the issuer's keys."
    )
    client_id: str | None = Field(
        None,
        description="Public client (device authorization grant) that `farside login` uses; "
        "advertised at `GET /api/v1/auth`.",
    )
    login_scopes: list[str] = Field(
        default_factory=lambda: ["openid", "profile", "offline_access"],
        description="Scopes `farside login` asks for (`offline_access` brings a refresh token).",
        json_schema_extra={"doc_default": '`["openid", "profile", "offline_access"]`'},
    )
    login_params: dict[str, str] = Field(
        default_factory=dict,
        description="Extra parameters `farside login` sends with its device authorization "
        'request, e.g. `{audience = "farside"}` (IAM) or `{resource = "urn:farside"}` '
        "(RFC 8707), so that the token is made for this gateway's audience.",
    )
    browser_client_id: str | None = Field(
        None,
        description="Public client (authorization code flow with PKCE) through which browsers "
        "log in to the web monitor at `/monitor`; register `<public_url>/monitor/"
        "oauth_callback` as its redirect URI. Unset: the monitor's login takes pasted tokens "
        "only.",
    )
    introspection: bool = Field(
        False,
        description="Also accept opaque (non-JWT) access tokens, such as IAM may issue: the "
        "gateway asks the issuer's `introspection_endpoint` (RFC 7662, from its discovery "
        "document) as the client below. An active token must name `issuer` (if it names one) "
        "and one of `audience`, like a JWT; the user and groups come from the same claims.",
    )
    introspection_client_id: str | None = Field(
        None,
        description="The gateway's own confidential client at the issuer, for introspection "
        "(not the public `client_id` of `farside login`). Required with `introspection`.",
    )
    introspection_client_secret: SecretStr | None = Field(
        None,
        description="That client's secret (HTTP basic authentication at the introspection "
        "endpoint); keep this file readable by the gateway only. Required with "
        "`introspection`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        # a single value reads naturally in TOML (audience = "farside"); store it as a list
        if isinstance(data, dict):
            for key in ("audience", "username_claim", "admin_groups", "allowed_groups"):
                if isinstance(data.get(key), str):
                    data = {**data, key: [data[key]]}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> OidcConfig:
        bad = sorted(set(self.algorithms) - set(_ASYMMETRIC))
        if bad or not self.algorithms:
            raise ValueError(
                f"oidc.algorithms: {', '.join(bad) or 'empty'} not allowed; use some of "
                f"{', '.join(_ASYMMETRIC)} (shared-secret and `none` signatures are refused)"
            )
        if not self.username_claim or not all(self.username_claim):
            raise ValueError("oidc.username_claim must name at least one claim")
        if self.introspection and not (
            self.issuer
            and self.introspection_client_id
            and self.introspection_client_secret
            and self.introspection_client_secret.get_secret_value()
        ):
            raise ValueError(
                "oidc.introspection needs oidc.issuer, and the gateway's own confidential "
                "client at the issuer: set oidc.introspection_client_id and "
                "oidc.introspection_client_secret (or set introspection = false)"
            )
        if self.issuer is None:
            return self
        scheme, _, rest = self.issuer.partition("://")
        host = rest.split("/", 1)[0].rsplit(":", 1)[0] if rest else ""
        if scheme not in ("https", "http") or not host:
            raise ValueError(f"oidc.issuer {self.issuer!r} is not an http(s) URL")
        if scheme == "http" and host not in _LOOPBACK:
            raise ValueError(
                f"oidc.issuer {self.issuer!r} must use https (plain http only on loopback)"
            )
        if not self.audience or not all(self.audience):
            raise ValueError(
                "oidc.audience is required with oidc.issuer: name the audience the issuer "
                'puts in tokens for this gateway (e.g. audience = ["farside"])'
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.issuer is not None


class HubConfig(BaseModel):
    """JupyterHub API tokens: the gateway as a hub service (``/services/farside``). A token
    is accepted when the hub says it carries ``access:services!service=<service_name>``; the
    hub user's name is the farside user. Off unless ``api_url`` is set. See
    ``docs/how-to/jupyterhub.md``.
    """

    model_config = ConfigDict(extra="forbid")

    api_url: str | None = Field(
        None,
        description="The hub's REST API, e.g. `http://127.0.0.1:8081/hub/api` (what the hub "
        "gives its services as `JUPYTERHUB_API_URL`). Unset: hub tokens are not accepted.",
    )
    service_name: str = Field(
        "farside",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="The gateway's name in the hub's `services`; tokens need "
        "`access:services!service=<this>`.",
    )
    admin_groups: list[str] = Field(
        default_factory=list, description="Members of these hub groups are admins."
    )
    hub_admins_are_admins: bool = Field(False, description="Hub admins are gateway admins.")
    allowed_groups: list[str] = Field(
        default_factory=list,
        description="If set, only members of at least one of these hub groups may use the "
        "gateway with a hub token.",
    )
    cache_seconds: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="Seconds the hub's answer about a token is remembered (a token revoked at "
        "the hub still works this long).",
    )

    @model_validator(mode="after")
    def _url(self) -> HubConfig:
        if self.api_url is not None and not self.api_url.startswith(("http://", "https://")):
            raise ValueError(f"hub.api_url {self.api_url!r} is not an http(s) URL")
        return self

    @property
    def enabled(self) -> bool:
        return self.api_url is not None
