"""The unmodified AWS CLI against the server (credentials in environment variables)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.ahi.conftest import ROLE_ARN, Server, import_folder, wait_for_job
from tests.factory import make_series


def aws(server: Server, *args: str, host: str = "127.0.0.1", tmp: Path,
        program: list[str] | None = None) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=server.key_id, AWS_SECRET_ACCESS_KEY=server.secret,
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(tmp / "aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp / "aws-credentials"), AWS_MAX_ATTEMPTS="1")
    result = subprocess.run([sys.executable, *(program or ["-m", "awscli"]), "medical-imaging", *args,
                             "--endpoint-url", f"http://{host}:{server.port}", "--output", "json"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def test_the_control_plane_from_the_aws_cli(server: Server, tmp_path: Path) -> None:
    created = aws(server, "create-datastore", "--datastore-name", "from-cli", "--lossless-storage-format",
                  "JPEG_2000_LOSSLESS", tmp=tmp_path)
    datastore = created["datastoreId"]
    assert created["datastoreStatus"] == "ACTIVE"
    props = aws(server, "get-datastore", "--datastore-id", datastore, tmp=tmp_path)["datastoreProperties"]
    assert props["datastoreName"] == "from-cli" and props["losslessStorageFormat"] == "JPEG_2000_LOSSLESS"
    listed = aws(server, "list-datastores", tmp=tmp_path)["datastoreSummaries"]
    assert datastore in [d["datastoreId"] for d in listed]

    folder = server.new_folder()
    make_series(folder, 2)
    # The CLI reads an argument starting with file:// as a local file, so file URIs go in
    # --cli-input-json, or in the file:/path form.
    job = aws(server, "start-dicom-import-job", "--datastore-id", datastore, "--data-access-role-arn", ROLE_ARN,
              "--cli-input-json", json.dumps({"inputS3Uri": folder.as_uri() + "/",
                                              "outputS3Uri": server.new_folder("out").as_uri() + "/"}),
              tmp=tmp_path)
    assert job["jobStatus"] == "SUBMITTED"
    short = aws(server, "start-dicom-import-job", "--datastore-id", datastore, "--data-access-role-arn", ROLE_ARN,
                "--input-s3-uri", f"file:{folder}/", "--output-s3-uri", f"file:{server.new_folder('out')}/",
                tmp=tmp_path)
    for started in (job, short):
        wait_for_job(server.client(), datastore, started["jobId"])
    jobs = aws(server, "list-dicom-import-jobs", "--datastore-id", datastore, tmp=tmp_path)["jobSummaries"]
    assert [(j["jobId"], j["jobStatus"]) for j in jobs] == [(short["jobId"], "COMPLETED"),
                                                            (job["jobId"], "COMPLETED")]
    # The CLI's own paginator walks pages of one.
    paged = aws(server, "list-datastores", "--page-size", "1", tmp=tmp_path)["datastoreSummaries"]
    assert {d["datastoreId"] for d in paged} == {d["datastoreId"] for d in listed}


# What the hosts line '127.0.0.1 runtime-localhost' does, done inside the CLI's process (so the
# test does not edit /etc/hosts): the data-plane commands call runtime-localhost.
HOSTS_LINE = """
import socket, sys
_real = socket.getaddrinfo
socket.getaddrinfo = lambda host, *a, **k: _real("127.0.0.1" if host == "runtime-localhost" else host, *a, **k)
from awscli.clidriver import main
sys.exit(main())
"""


def test_the_data_plane_from_the_aws_cli_with_the_hosts_line(server: Server, tmp_path: Path) -> None:
    client = server.client()
    datastore = client.create_datastore(datastoreName="cli-data")["datastoreId"]
    folder = server.new_folder()
    make_series(folder, 1)
    props = import_folder(client, server, datastore, folder)
    result = Path(props["outputS3Uri"].removeprefix("file://"))
    (entry,) = json.loads((result / "job-output-manifest.json").read_text())["jobSummary"]["imageSetsSummary"]
    found = aws(server, "search-image-sets", "--datastore-id", datastore, host="localhost", tmp=tmp_path,
                program=["-c", HOSTS_LINE])
    assert [s["imageSetId"] for s in found["imageSetsMetadataSummaries"]] == [entry["imageSetId"]]
    image_set = aws(server, "get-image-set", "--datastore-id", datastore, "--image-set-id", entry["imageSetId"],
                    host="localhost", tmp=tmp_path, program=["-c", HOSTS_LINE])
    assert image_set["versionId"] == "1"
    target = tmp_path / "metadata.json.gz"
    aws(server, "get-image-set-metadata", "--datastore-id", datastore, "--image-set-id", entry["imageSetId"],
        str(target), host="localhost", tmp=tmp_path, program=["-c", HOSTS_LINE])
    assert json.loads(gzip.decompress(target.read_bytes()))["ImageSetID"] == entry["imageSetId"]
