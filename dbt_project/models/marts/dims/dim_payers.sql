-- One row per payer (insurance plan) with its class and authorization rules.
select
    payer_id,
    payer_name,
    payer_class,
    requires_auth,
    auth_visit_limit
from {{ ref('stg_raw__payers') }}
