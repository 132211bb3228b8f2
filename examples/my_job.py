"""A team's own job script: reads the outputs contract and the token the way production does, with the official
clients, and checks it can see the gated model it will train. The only local-cloud knowledge is endpoints from the
environment (unset in production: the clients' defaults apply)."""
import json
import os
import sys

from google.cloud import secretmanager
from huggingface_hub import HfApi

outputs = json.load(open(os.environ["HFGATE_OUTPUTS"]))
endpoint = os.environ.get("HFGATE_SECRETMANAGER_ENDPOINT")
client = secretmanager.SecretManagerServiceClient(client_options={"api_endpoint": endpoint} if endpoint else None)
token = client.access_secret_version(name=f"{outputs['token_secret']}/versions/latest").payload.data.decode()
model = sys.argv[1]
info = HfApi().model_info(model, token=token)
HfApi().auth_check(model, token=token)
print(json.dumps({"model": info.id, "gated": info.gated, "trainer": outputs["trainer_email"]}))
