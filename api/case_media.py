"""A case's stored video as a local file, for the review page's player (which streams it with HTTP
ranges). Local files are served in place; a remote source is fetched once, under the same policy as
the workers' fetcher, into a cache under the data folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from sqlmodel import Session

from api.deps import Services
from api.problems import NotFound, Unavailable
from stores.db import Analysis, Video


def video_file(svc: Services, session: Session, analysis_id: str) -> Path:
    from service.fetch import FetchError, fetched, local_path

    a = session.get(Analysis, analysis_id)
    if a is None:
        raise NotFound(f"no analysis {analysis_id!r}")
    video = session.get(Video, a.video_id)
    if video is None:
        raise NotFound(f"video {a.video_id} has no stored submission to play")
    try:
        if urlsplit(video.uri).scheme.lower() == "file":
            return local_path(video.uri, svc.settings)
        folder = svc.settings.data_dir / "review-media" / analysis_id
        cached = next(folder.glob("video*"), None) if folder.is_dir() else None
        if cached is not None:
            return cached
        folder.mkdir(parents=True, exist_ok=True)
        with fetched(video.uri, svc.settings) as path:
            target = folder / f"video{path.suffix}"
            partial = folder / f".{target.name}.part"  # not matched by the glob above until complete
            shutil.copyfile(path, partial)
            os.replace(partial, target)
        return target
    except FetchError as e:
        raise Unavailable(f"the video of {a.video_id} cannot be read: {e}") from None
