-- Rows refused by ingestion (raw._quarantine), one per (load, line, rule); renamed and cast only.
select
    cast(load_id as bigint) as load_id,
    cast(source as string) as source,
    cast(file as string) as file,
    cast(line as bigint) as line,
    cast(rule as string) as rule,
    cast(column_name as string) as column_name,
    cast(detail as string) as detail
from {{ raw_source('_quarantine', [
    'load_id', 'source', 'file', 'line', 'rule', 'column_name', 'detail'
]) }}
