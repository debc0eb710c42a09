-- Patient demographics and contact details. PHI - front desk only; never shown to marketing or analysts.
-- Latest version per natural key (patient_id), by updated_at within each source system; across systems each
-- field from the most authoritative system that carries it (merge_latest); rename and cast only.
-- Incremental (macros/incremental.sql): re-merges only the keys new loads touched; a full refresh rebuilds it.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{{ incremental_delete_scope('patients', 'patient_id') }}"
) }}

with deduped as (
    {{ merge_latest(
        'patients', [
            'patient_id', 'first_name', 'last_name', 'birth_date', 'sex', 'phone', 'email', 'address_line',
            'city', 'state', 'zip', 'primary_payer_id', 'member_id', 'created_at', 'updated_at', '_load_id',
            '_row_hash', '_line'
        ],
        ['patient_id'],
        'updated_at'
    ) }}
)

select
    cast(patient_id as string) as patient_id,
    cast(first_name as string) as first_name,
    cast(last_name as string) as last_name,
    cast(birth_date as date) as birth_date,
    cast(sex as string) as sex,
    cast(phone as string) as phone,
    cast(email as string) as email,
    cast(address_line as string) as address_line,
    cast(city as string) as city,
    cast(state as string) as state,
    cast(zip as string) as zip,
    cast(primary_payer_id as string) as primary_payer_id,
    cast(member_id as string) as member_id,
    cast(created_at as timestamp) as created_at,
    cast(updated_at as timestamp) as updated_at,
    _load_id,
    _row_hash,
    _line
from deduped
