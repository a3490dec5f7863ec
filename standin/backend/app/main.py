"""Stand-in for the image2model backend: the production endpoints and their auth behaviour.

With ENVIRONMENT=production and an empty API_KEY, every authenticated request answers
500 "API key not configured", as the real backend does in a stale container.
"""

import hmac
import json
import os
import pathlib
import socket
import uuid
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, File, HTTPException, UploadFile
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.broker import JOB_QUEUE, connect

ALLOWED_SUFFIXES = {".jpg", ".jpeg", ".png"}
UPLOAD_DIR = pathlib.Path("/app/uploads")

app = FastAPI(title="image2model stand-in")
bearer = HTTPBearer(auto_error=False)
redis_client = connect("REDIS_URL")


def bearer_key(env_name: str, label: str):
    def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        expected = os.environ.get(env_name, "")
        if not expected:
            if os.environ.get("ENVIRONMENT") == "production":
                raise HTTPException(status_code=500, detail=f"{label} not configured")
            return
        if credentials is None:
            raise HTTPException(status_code=401, detail="Not authenticated")
        if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
            raise HTTPException(status_code=403, detail="Invalid API key")

    return check


def _redis_state() -> str:
    try:
        redis_client.ping()
    except Exception as error:  # any redis failure makes the API unhealthy
        return type(error).__name__
    return "ok"


def _database_state() -> str:
    """The database is not used yet (as in production); its port answering is enough."""
    url = urlsplit(os.environ.get("DATABASE_URL", ""))
    try:
        socket.create_connection((url.hostname or "postgres", url.port or 5432), timeout=3).close()
    except OSError as error:
        return type(error).__name__
    return "ok"


@app.get("/health")
def health() -> dict:
    return {"status": "healthy"}


@app.get("/api/v1/health/")
@app.get("/api/v1/health/readiness")
def api_health():
    redis_state = _redis_state()
    if redis_state != "ok":
        return JSONResponse(status_code=503, content={"status": "unhealthy", "redis": redis_state})
    return {"status": "healthy", "redis": "ok"}


@app.get("/api/v1/health/liveness")
def liveness() -> dict:
    return {"status": "alive"}


@app.get("/api/v1/health/detailed")
def detailed():
    states = {"redis": _redis_state(), "database": _database_state()}
    healthy = all(state == "ok" for state in states.values())
    return JSONResponse(status_code=200 if healthy else 503, content={"status": "healthy" if healthy else "unhealthy", **states})


@app.post("/api/v1/upload/", dependencies=[Depends(bearer_key("API_KEY", "API key"))])
async def upload(files: list[UploadFile] = File(...)) -> dict:
    names = [pathlib.PurePath(upload.filename or "").name for upload in files]
    rejected = [name for name in names if pathlib.PurePath(name).suffix.lower() not in ALLOWED_SUFFIXES]
    if rejected:
        raise HTTPException(status_code=400, detail=f"only jpg, jpeg and png are accepted: {rejected}")
    job_id = uuid.uuid4().hex
    job_dir = UPLOAD_DIR / job_id
    job_dir.mkdir(parents=True)
    for upload_file, name in zip(files, names):
        (job_dir / name).write_bytes(await upload_file.read())
    redis_client.hset(f"job:{job_id}", mapping={"status": "queued", "files": json.dumps(names)})
    redis_client.lpush(JOB_QUEUE, job_id)
    return {"job_id": job_id, "status": "queued", "files": names}


@app.get("/api/v1/admin/status", dependencies=[Depends(bearer_key("ADMIN_API_KEY", "Admin API key"))])
def admin_status() -> dict:
    return {"queued_jobs": redis_client.llen(JOB_QUEUE)}
