-- On-time performance per day, carrier and origin airport. Built per month (the contract's
-- Dagster partitions): a run replaces only the months it is asked for.
{{ config(
    incremental_strategy='delete+insert',
    unique_key=['flight_date', 'carrier', 'origin'],
) }}

select
    cast(time_hour as date) as flight_date,
    carrier,
    origin,
    count(*) as flights,
    cast(sum(case when dep_time is null then 1 else 0 end) as bigint) as cancelled,
    avg(dep_delay) as mean_dep_delay_min,
    avg(arr_delay) as mean_arr_delay_min,
    avg(case when arr_delay is null then null when arr_delay <= 15 then 1e0 else 0e0 end) as on_time_share
from {{ source('operations', 'flights') }}
where {{ mesh_partition_filter('time_hour') }}
group by cast(time_hour as date), carrier, origin
