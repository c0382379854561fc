-- Staging: the airports product as the reference domain's models use it (codes upper-cased,
-- names trimmed, only airports with a known time zone). Internal to the domain.
{{ config(materialized='ephemeral') }}  {#- not a product: inlined (a CTE) into the models that read it, never a table -#}

select
    upper(faa) as faa,
    trim(name) as airport_name,
    lat,
    lon,
    alt,
    tz,
    dst,
    tzone
from {{ source('reference', 'airports') }}
where tzone is not null
