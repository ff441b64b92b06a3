#!/bin/sh
# The operator's deployment of an mcbn server proxy on Confidential Space.
# Not run by tests (it needs a Google Cloud project); read it as a recipe.
set -eu
PROJECT=${PROJECT:-operator-prod}
ZONE=${ZONE:-europe-west4-a}
IMAGE=${IMAGE:?set IMAGE to REGISTRY/mcbn-proxy-server@sha256:... (go run ./build/image --bake examples/confidential-space/server)}
SA=mcbn-runner@$PROJECT.iam.gserviceaccount.com

gcloud iam service-accounts create mcbn-runner --project "$PROJECT"
gcloud projects add-iam-policy-binding "$PROJECT" \
  --member "serviceAccount:$SA" --role roles/confidentialcomputing.workloadUser
gcloud projects add-iam-policy-binding "$PROJECT" \
  --member "serviceAccount:$SA" --role roles/logging.logWriter
gcloud projects add-iam-policy-binding "$PROJECT" \
  --member "serviceAccount:$SA" --role roles/artifactregistry.reader

# The image carries its configuration (--bake) and refuses tee-cmd and
# tee-env-*: the operator picks the VM, never where the traffic goes.
gcloud compute instances create mcbn-server-proxy \
  --project "$PROJECT" --zone "$ZONE" \
  --machine-type n2d-standard-2 --confidential-compute-type SEV \
  --shielded-secure-boot --maintenance-policy MIGRATE \
  --image-project confidential-space-images --image-family confidential-space \
  --service-account "$SA" --scopes cloud-platform \
  --metadata "tee-image-reference=$IMAGE,tee-restart-policy=Always,tee-container-log-redirect=true"
