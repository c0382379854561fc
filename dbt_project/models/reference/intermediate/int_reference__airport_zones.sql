-- Intermediate: each airport with the facts the time-zone mart aggregates (its zone, standard
-- UTC offset, and whether it follows US daylight saving time). Internal to the domain.
{{ config(materialized='ephemeral') }}  {#- not a product: inlined (a CTE) into the models that read it, never a table -#}

select
    faa,
    tzone,
    tz as utc_offset_hours,
    dst = 'A' as observes_dst,
    alt as altitude_ft
from {{ ref('stg_reference__airports') }}
