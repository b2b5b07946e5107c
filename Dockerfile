# Custom Beam SDK worker container for running tfmusic's Beam jobs on Dataflow (an alternative
# to --setup_file, which makes every worker build and install the package at start-up).
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/tfmusic-beam:0.1.0 .
#   docker push REGION-docker.pkg.dev/PROJECT/REPO/tfmusic-beam:0.1.0
#   tfmusic dmelodies generate --out gs://BUCKET/dmelodies --runner=DataflowRunner ... \
#       --sdk_container_image=REGION-docker.pkg.dev/PROJECT/REPO/tfmusic-beam:0.1.0
#
# The base image's Beam version must equal the launcher's (apache-beam==2.77.* in setup.cfg).
FROM apache/beam_python3.11_sdk:2.77.0

WORKDIR /opt/tfmusic
COPY setup.py setup.cfg pyproject.toml README.md ./
COPY tfmusic ./tfmusic
# [dataflow] = apache-beam[gcp]; pip keeps the image's Beam (same version pin).
RUN pip install --no-cache-dir '.[dataflow]' && pip check

# The SDK harness entry point comes from the base image.
ENTRYPOINT ["/opt/apache/beam/boot"]
