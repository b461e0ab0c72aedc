#!/usr/bin/env bash
# Create everything the controller needs on Google Cloud, then deploy it; safe to run again.
#
#   PROJECT_ID=my-project REGION=us-central1 \
#   RUNTIME_SERVICE_ACCOUNTS="123456789-compute@developer.gserviceaccount.com" \
#     deploy/setup.sh
#
# Run it from a clone of this repository, with gcloud logged in as someone who may create service
# accounts, custom roles, buckets and Cloud Run services, and with `cloudrun-reconciler` on PATH
# (`source .venv/bin/activate`): the desired file is validated before it is uploaded.
#
# Settings (environment):
#   PROJECT_ID                the project the controller runs in (required)
#   REGION                    where it runs, its bucket and its image live (required)
#   RUNTIME_SERVICE_ACCOUNTS  the service accounts the managed services run as, space-separated; the
#                             controller may act as each one, which an update of their service needs
#   MANAGED_PROJECTS          projects whose services it manages (default: PROJECT_ID)
#   CONFIG_BUCKET             the bucket holding desired-state.yaml (default: PROJECT_ID-cloudrun-reconciler)
#   DESIRED_FILE              the desired file to upload (default: desired-state.yaml)
#   REPOSITORY                Artifact Registry repository for the image (default: cloudrun-reconciler)
#   IMAGE                     the image to build and run (default: in REPOSITORY, tagged with the version)
#   MANAGE_LOG_METRIC         1: the controller may create the log-based signal metrics (default: 0)
#   WITH_CI                   1: also create the two CI identities of examples/github-actions (default: 0)
#
# What each role and permission is for: deploy/IAM.md. Every setting of the service: deploy/service.yaml.
set -euo pipefail

: "${PROJECT_ID:?set PROJECT_ID to the project the controller runs in}"
: "${REGION:?set REGION to the region it runs in, such as us-central1}"
RUNTIME_SERVICE_ACCOUNTS="${RUNTIME_SERVICE_ACCOUNTS:-}"
MANAGED_PROJECTS="${MANAGED_PROJECTS:-$PROJECT_ID}"
CONFIG_BUCKET="${CONFIG_BUCKET:-$PROJECT_ID-cloudrun-reconciler}"
DESIRED_FILE="${DESIRED_FILE:-desired-state.yaml}"
REPOSITORY="${REPOSITORY:-cloudrun-reconciler}"
IMAGE="${IMAGE:-$REGION-docker.pkg.dev/$PROJECT_ID/$REPOSITORY/cloudrun-reconciler:0.1.0}"
MANAGE_LOG_METRIC="${MANAGE_LOG_METRIC:-0}"
WITH_CI="${WITH_CI:-0}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
controller="cloudrun-reconciler@$PROJECT_ID.iam.gserviceaccount.com"

step() { printf '\n== %s\n' "$*"; }

# The permissions listed in a role file, comma-separated (the role files hold one per `  - ` line).
permissions_of() { sed -n 's/^ *- *\([a-zA-Z.]*\) *$/\1/p' "$1" | paste -sd, -; }

# Create a project's custom role from its file, or bring an existing one up to date.
ensure_role() {
    local project="$1" role="$2" file="$3"
    if gcloud iam roles describe "$role" --project="$project" >/dev/null 2>&1; then
        gcloud iam roles update "$role" --project="$project" --permissions="$(permissions_of "$file")" --quiet
    else
        gcloud iam roles create "$role" --project="$project" --file="$file"
    fi
}

ensure_service_account() {
    local name="$1" title="$2"
    gcloud iam service-accounts describe "$name@$PROJECT_ID.iam.gserviceaccount.com" \
        --project="$PROJECT_ID" >/dev/null 2>&1 ||
        gcloud iam service-accounts create "$name" --project="$PROJECT_ID" --display-name="$title"
}

grant_project_role() {
    local project="$1" member="$2" role="$3"
    gcloud projects add-iam-policy-binding "$project" --member="$member" --role="$role" \
        --condition=None >/dev/null
}

command -v gcloud >/dev/null ||
    { echo "gcloud is not on PATH: install the Google Cloud CLI and run 'gcloud auth login'" >&2; exit 1; }
command -v cloudrun-reconciler >/dev/null ||
    { echo "cloudrun-reconciler is not on PATH: run 'source .venv/bin/activate' first" >&2; exit 1; }
step "check $DESIRED_FILE"
cloudrun-reconciler validate "$DESIRED_FILE"

step "enable the APIs"
gcloud services enable run.googleapis.com monitoring.googleapis.com logging.googleapis.com \
    storage.googleapis.com iam.googleapis.com artifactregistry.googleapis.com \
    cloudbuild.googleapis.com --project="$PROJECT_ID"

step "the controller's service account: $controller"
ensure_service_account cloudrun-reconciler "cloudrun-reconciler controller"

for project in $MANAGED_PROJECTS; do
    step "custom roles in $project, bound to the controller"
    ensure_role "$project" cloudrunReconciler "$here/iam/controller-role.yaml"
    grant_project_role "$project" "serviceAccount:$controller" "projects/$project/roles/cloudrunReconciler"
    if [ "$MANAGE_LOG_METRIC" = 1 ]; then
        ensure_role "$project" cloudrunReconcilerLogMetrics "$here/iam/log-metric-writer-role.yaml"
        grant_project_role "$project" "serviceAccount:$controller" \
            "projects/$project/roles/cloudrunReconcilerLogMetrics"
    fi
done

if [ -z "$RUNTIME_SERVICE_ACCOUNTS" ]; then
    echo "warning: RUNTIME_SERVICE_ACCOUNTS is empty: every update of a managed service will be refused" >&2
    echo "  (PERMISSION_DENIED on iam.serviceAccounts.actAs) until the controller may act as its account" >&2
fi
for account in $RUNTIME_SERVICE_ACCOUNTS; do
    step "the controller may act as $account"
    # By full name with `-` for its project, which IAM infers from the account (it may live in a managed
    # project, and a bare email needs gcloud's core/project set); gcloud's own get-iam-policy sends this.
    gcloud iam service-accounts add-iam-policy-binding "projects/-/serviceAccounts/$account" \
        --member="serviceAccount:$controller" --role=roles/iam.serviceAccountUser >/dev/null
done

step "the desired file's bucket: gs://$CONFIG_BUCKET"
gcloud storage buckets describe "gs://$CONFIG_BUCKET" >/dev/null 2>&1 ||
    gcloud storage buckets create "gs://$CONFIG_BUCKET" --project="$PROJECT_ID" --location="$REGION" \
        --uniform-bucket-level-access --public-access-prevention
gcloud storage buckets add-iam-policy-binding "gs://$CONFIG_BUCKET" \
    --member="serviceAccount:$controller" --role=roles/storage.objectViewer >/dev/null
gcloud storage cp "$DESIRED_FILE" "gs://$CONFIG_BUCKET/desired-state.yaml"

step "the image: $IMAGE"
gcloud artifacts repositories describe "$REPOSITORY" --project="$PROJECT_ID" --location="$REGION" \
    >/dev/null 2>&1 ||
    gcloud artifacts repositories create "$REPOSITORY" --project="$PROJECT_ID" --location="$REGION" \
        --repository-format=docker
gcloud builds submit "$root" --project="$PROJECT_ID" --region="$REGION" --tag="$IMAGE"

step "the service: cloudrun-reconciler in $REGION"
args=""
if [ "$MANAGE_LOG_METRIC" = 1 ]; then args='"--manage-log-metric"'; fi
service="$(cat "$here/service.yaml")"
service="${service//\$\{PROJECT_ID\}/$PROJECT_ID}"
service="${service//\$\{IMAGE\}/$IMAGE}"
service="${service//\$\{CONFIG_BUCKET\}/$CONFIG_BUCKET}"
service="${service//\$\{CONTROLLER_ARGS\}/$args}"
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
rendered="$workdir/service.yaml"
printf '%s\n' "$service" >"$rendered"
gcloud run services replace "$rendered" --project="$PROJECT_ID" --region="$REGION"

if [ "$WITH_CI" = 1 ]; then
    step "CI identities: a read-only planner for pull requests, a syncer for merges"
    ensure_service_account cloudrun-reconciler-plan "cloudrun-reconciler plan (CI, pull requests)"
    ensure_service_account cloudrun-reconciler-sync "cloudrun-reconciler sync (CI, merges)"
    for project in $MANAGED_PROJECTS; do
        ensure_role "$project" cloudrunReconcilerPlanner "$here/iam/planner-role.yaml"
        grant_project_role "$project" "serviceAccount:cloudrun-reconciler-plan@$PROJECT_ID.iam.gserviceaccount.com" \
            "projects/$project/roles/cloudrunReconcilerPlanner"
    done
    gcloud storage buckets add-iam-policy-binding "gs://$CONFIG_BUCKET" \
        --member="serviceAccount:cloudrun-reconciler-sync@$PROJECT_ID.iam.gserviceaccount.com" \
        --role=roles/storage.objectUser >/dev/null
fi

step "done"
echo "status, from inside the VPC: curl -H \"Authorization: Bearer \$(gcloud auth print-identity-token)\" URL/status"
echo "  URL: gcloud run services describe cloudrun-reconciler --project=$PROJECT_ID --region=$REGION --format='value(status.url)'"
echo "logs: gcloud logging read 'resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"cloudrun-reconciler\"' --project=$PROJECT_ID --limit=20"
