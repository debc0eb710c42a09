-- Load audit of ingestion (raw._loads): one row per file load; renamed and cast only.
select
    cast(load_id as bigint) as load_id,
    cast(file as string) as file,
    cast(sha256 as string) as sha256,
    cast(source as string) as source,
    cast(rows_read as bigint) as rows_read,
    cast(rows_landed as bigint) as rows_landed,
    cast(rows_quarantined as bigint) as rows_quarantined,
    cast(rows_duplicate as bigint) as rows_duplicate,
    cast(started_at as timestamp) as started_at,
    cast(finished_at as timestamp) as finished_at,
    cast(status as string) as status,
    cast(message as string) as message
from {{ raw_source('_loads', [
    'load_id', 'file', 'sha256', 'source', 'rows_read', 'rows_landed', 'rows_quarantined',
    'rows_duplicate', 'started_at', 'finished_at', 'status', 'message'
]) }}
