-- One row per X12 payer id (`x12:payer/<id>`, NM1*PR / N1*PR of an 837P or 835) with our payer_id: the payer
-- whose payer_id is <id>, else the one whose name is <id> (both compared as upper-case letters and digits). Only
-- a match of exactly one payer counts; an id that matches none (or several) keeps its x12:payer/ value and shows
-- as its own payer. Read wherever a claim's or remittance's payer is read (docs/architecture.md, "Linking").
with x12_ids as (
    select payer_id as source_id from {{ ref('stg_raw__claims') }}
    where payer_id like 'x12:payer/%'
    union
    select payer_id as source_id from {{ ref('stg_raw__remittances') }}
    where payer_id like 'x12:payer/%'
),

payers as (
    select
        payer_id,
        upper({{ regexp_replace_all('payer_id', '[^A-Za-z0-9]', '') }}) as id_key,
        upper({{ regexp_replace_all('payer_name', '[^A-Za-z0-9]', '') }}) as name_key
    from {{ ref('stg_raw__payers') }}
),

keyed as (
    select
        source_id,
        upper({{ regexp_replace_all("substr(source_id, length('x12:payer/') + 1)", '[^A-Za-z0-9]', '') }}) as x12_key
    from x12_ids
),

candidates as (
    select
        k.source_id,
        p.payer_id,
        1 as tier,
        'x12_payer_id' as match_rule
    from keyed as k
    inner join payers as p on k.x12_key = p.id_key
    union all
    select
        k.source_id,
        p.payer_id,
        2 as tier,
        'x12_payer_name' as match_rule
    from keyed as k
    inner join payers as p on k.x12_key = p.name_key
),

best as (
    select *
    from candidates
    qualify tier = min(tier) over (partition by source_id)
)

select
    source_id,
    min(payer_id) as payer_id,
    any_value(match_rule) as match_rule
from best
group by source_id
having count(distinct payer_id) = 1
