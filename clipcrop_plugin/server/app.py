"""The FastAPI application behind ``clipcrop serve``: JSON API, thumbnails and the review page.

Every photo is addressed by its database id. No request ever names a file path: the server
only opens files whose path it read from the database (``Library.photo_file``), so there is
nothing to traverse.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .. import __version__
from ..api import Library, UnknownPhoto
from ..config import data_dir
from ..elements import ELEMENTS
from ..errors import ClipcropError, ImageError, MetadataError, StoreError
from . import convert
from .models import (
    DaemonStatus,
    ElementInfo,
    LabelOut,
    LabelRequest,
    MetadataRequest,
    MetadataResult,
    PhotoDetailOut,
    PhotoPageOut,
    Problem,
    ScoreRequest,
    ServerInfo,
)
from .security import MAX_BODY_BYTES, BodyLimitMiddleware, GuardMiddleware, default_allowed_hosts
from .thumbs import SIZES, ThumbnailCache, snap_size

STATIC = Path(__file__).with_name("static")
PhotoId = Annotated[int, PathParam(ge=1, le=2**62, description="database id of the photo")]
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem}, 404: {"model": Problem}, 409: {"model": Problem}, 422: {"model": Problem},
    413: {"model": Problem, "description": "the request body is over the limit"},
    503: {"model": Problem, "description": "the database could not be read or written"},
}
MAX_PROBLEMS = 5  # validation problems named in a 422 (each without the input that caused it)


def validation_detail(exc: RequestValidationError) -> str:
    """One line naming what was wrong and where, never echoing the (possibly huge) input."""
    parts = []
    errors = exc.errors()
    for err in errors[:MAX_PROBLEMS]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",)) or "body"
        msg = " ".join(str(err.get("msg", "invalid")).split())[:160]
        parts.append(f"{where[:80]}: {msg}")
    more = f" (+{len(errors) - MAX_PROBLEMS} more)" if len(errors) > MAX_PROBLEMS else ""
    return "invalid request: " + "; ".join(parts) + more


def create_app(
    library: Library,
    *,
    token: str | None = None,
    allowed_hosts: list[str] | None = None,
    bind_host: str = "127.0.0.1",
    thumbnail_dir: Path | None = None,
    max_body: int = MAX_BODY_BYTES,
) -> FastAPI:
    """Build the app over an open :class:`Library`.

    ``allowed_hosts``: names the ``Host`` header may carry (default: loopback names and
    ``bind_host``). ``token``: when set, every API call needs it (Bearer header or cookie).
    Thumbnails are cached under ``thumbnail_dir`` (default ``<data dir>/cache/thumbs``).
    Request bodies over ``max_body`` bytes are refused with 413.
    """
    app = FastAPI(
        title="clipcrop",
        version=__version__,
        summary="Aesthetic crop suggestions for a photo library: query, review, label, write XMP.",
        # FastAPI's /docs and /redoc pages load their scripts from a CDN; a script from elsewhere
        # running in our origin could call the API. The description stays at /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    thumbs = ThumbnailCache(thumbnail_dir or data_dir() / "cache" / "thumbs")
    app.state.library = library
    app.state.thumbs = thumbs

    # Middleware runs outermost-last-added: Host check first, then token and cross-site checks.
    app.add_middleware(GuardMiddleware, token=token, exempt_prefixes=("/static/",))
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body)
    app.add_middleware(
        TrustedHostMiddleware, allowed_hosts=allowed_hosts or default_allowed_hosts(bind_host), www_redirect=False
    )

    @app.exception_handler(ClipcropError)
    async def _clipcrop_error(request: Request, exc: ClipcropError) -> JSONResponse:
        if isinstance(exc, UnknownPhoto):
            status = 404
        elif isinstance(exc, ImageError):
            status = 422
        elif isinstance(exc, MetadataError):
            status = 409
        elif isinstance(exc, StoreError):
            status = 503
        else:  # ConfigError and the rest: the request asked for something impossible
            status = 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_detail(exc)}, status_code=422)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def review_page() -> FileResponse:
        return FileResponse(STATIC / "review.html", headers={"Cache-Control": "no-cache"})

    @app.get("/photo/{photo_id}", include_in_schema=False)
    def photo_page(photo_id: PhotoId) -> FileResponse:
        return FileResponse(STATIC / "photo.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/info", response_model=ServerInfo, tags=["library"])
    def info() -> ServerInfo:
        """Version, the ten elements, and the candidate sets present in the library."""
        return ServerInfo(
            version=__version__,
            elements=[ElementInfo(name=e.name, label=e.label, branch=e.branch) for e in ELEMENTS],
            aspects=library.aspects(),
            photos=library.count(),
        )

    @app.get("/api/photos", response_model=PhotoPageOut, responses=ERRORS, tags=["photos"])
    def list_photos(
        folder: str | None = Query(None, max_length=4096, description="this folder and below"),
        glob: str | None = Query(None, max_length=4096, description="shell pattern over the path"),
        status: Literal["pending", "scored", "failed", "gone"] | None = None,
        scorer: str | None = Query(None, max_length=64),
        aspect: str | None = Query(None, max_length=16, description="select the rank-1 crop of this set"),
        min_score: float | None = None,
        min_improvement: float | None = None,
        enhances: str | None = Query(None, max_length=32, description="the crop enhances this element"),
        reduces: str | None = Query(None, max_length=32, description="the crop reduces this element"),
        labelled: bool | None = None,
        taken_after: datetime | None = Query(None, description="captured at or after (camera-local time)"),
        taken_before: datetime | None = Query(None, description="captured at or before (camera-local time)"),
        camera: str | None = Query(None, max_length=64),
        include_gone: bool = Query(False, description="also list photos whose files were deleted"),
        sort: Literal["improvement", "score", "path", "taken", "uncertain"] = "improvement",
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0, le=10**9),
    ) -> PhotoPageOut:
        """Photos matching the filters, as ``clipcrop query`` selects and sorts them."""
        filters = dict(
            folder=folder, path_glob=glob, status=status, scorer=scorer, aspect=aspect, min_score=min_score,
            min_improvement=min_improvement, enhances=enhances, reduces=reduces, labelled=labelled, camera=camera,
            # EXIF times have no zone and are stored as such: compare like with like.
            taken_after=taken_after.replace(tzinfo=None) if taken_after else None,
            taken_before=taken_before.replace(tzinfo=None) if taken_before else None,
            include_gone=include_gone or None,
        )
        page = library.photos(sort=sort, limit=limit, offset=offset, **filters)
        # A page of not-yet-labelled photos has no labels to look up.
        return convert.photo_page(library, page, limit=limit, offset=offset, with_labels=labelled is not False)

    @app.get("/api/photos/{photo_id}", response_model=PhotoDetailOut, responses=ERRORS, tags=["photos"])
    def photo(photo_id: PhotoId) -> PhotoDetailOut:
        """One photo: every candidate of its active run, ranked per set, with explanations and labels."""
        return convert.photo_detail(library, library.photo(photo_id))

    @app.get(
        "/api/photos/{photo_id}/thumbnail",
        responses={**ERRORS, 200: {"content": {"image/jpeg": {}}}, 304: {"description": "not modified"}},
        response_class=Response,
        tags=["photos"],
    )
    def thumbnail(
        request: Request,
        photo_id: PhotoId,
        size: int = Query(512, ge=16, le=4096, description=f"longest side; snapped to one of {SIZES}"),
    ) -> Response:
        """An upright JPEG preview, cached on disk and in the browser (ETag + Cache-Control)."""
        source, content_hash = library.photo_file(photo_id)
        bucket = snap_size(size)
        etag = '"' + hashlib.sha1(f"{content_hash}:{bucket}".encode()).hexdigest()[:20] + '"'
        headers = {"ETag": etag, "Cache-Control": "private, max-age=86400"}
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        # Bytes, not a FileResponse: a thumbnail is small, and the cache may be cleared between
        # making it and sending it.
        return Response(thumbs.read(source, content_hash, bucket), media_type="image/jpeg", headers=headers)

    @app.post("/api/photos/{photo_id}/score", response_model=PhotoDetailOut, responses=ERRORS, tags=["actions"])
    def score(photo_id: PhotoId, body: ScoreRequest | None = Body(None)) -> PhotoDetailOut:
        """Score the photo now (stores a new run) and return it."""
        aspects = body.aspects if body else None
        result = library.score_photo(photo_id, aspects=aspects)
        if not result.ok:  # recorded as failed in the database; the caller hears why
            raise ImageError(result.error or "the photo could not be scored")
        return convert.photo_detail(library, library.photo(photo_id))

    @app.get("/api/photos/{photo_id}/labels", response_model=list[LabelOut], responses=ERRORS, tags=["labels"])
    def labels(photo_id: PhotoId) -> list[LabelOut]:
        """Every label recorded for the photo, oldest first."""
        return [convert.label(x) for x in library.labels(photo_id)]

    @app.post(
        "/api/photos/{photo_id}/labels", response_model=LabelOut, status_code=201, responses=ERRORS, tags=["labels"]
    )
    def add_label(photo_id: PhotoId, body: LabelRequest) -> LabelOut:
        """Record accept / reject / a user-adjusted box / a pairwise preference."""
        saved = library.record_label(
            photo_id, body.kind, aspect=body.aspect, rank=body.rank, other_rank=body.other_rank,
            box=body.box, other_box=body.other_box, source=body.source,
        )
        return convert.label(saved)

    @app.post("/api/photos/{photo_id}/metadata", response_model=MetadataResult, responses=ERRORS, tags=["metadata"])
    def write_metadata(photo_id: PhotoId, body: MetadataRequest | None = Body(None)) -> MetadataResult:
        """Write the crop as XMP (sidecar by default), merging with existing metadata."""
        body = body or MetadataRequest()
        files = library.write_metadata(photo_id, aspect=body.aspect, embed=body.embed, naming=body.naming)
        return MetadataResult(photo_id=photo_id, files=[str(f) for f in files], cleared=False)

    @app.delete("/api/photos/{photo_id}/metadata", response_model=MetadataResult, responses=ERRORS, tags=["metadata"])
    def clear_metadata(
        photo_id: PhotoId, naming: Literal["ext", "base"] | None = Query(None, description="sidecar naming")
    ) -> MetadataResult:
        """Remove clipcrop's crop from the photo's XMP (other metadata is kept)."""
        files = library.clear_metadata(photo_id, naming=naming)
        return MetadataResult(photo_id=photo_id, files=[str(f) for f in files], cleared=True)

    @app.get("/api/status", response_model=DaemonStatus, tags=["library"])
    def daemon_status() -> DaemonStatus:
        """The folder daemon's last reported state."""
        try:
            doc = library.daemon_status()
        except ClipcropError as exc:
            return DaemonStatus(available=False, running=False, detail=str(exc))
        return DaemonStatus(available=True, running=bool(doc.get("running")), status=doc)

    return app
