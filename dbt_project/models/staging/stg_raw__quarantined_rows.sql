-- Rows refused by ingestion (raw._quarantine), one per (load, line, rule); renamed and cast only.
select
    cast(load_id as bigint) as load_id,
    cast(source as varchar) as source,
    cast(file as varchar) as file,
    cast(line as bigint) as line,
    cast(rule as varchar) as rule,
    cast(column_name as varchar) as column_name,
    cast(detail as varchar) as detail
from {{ raw_source('_quarantine', [
    'load_id', 'source', 'file', 'line', 'rule', 'column_name', 'detail'
]) }}
