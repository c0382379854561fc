-- Daily weather per airport station, labelled with the station's name from the reference
-- domain (a published product of another domain, read through its dbt source).
-- Partitioned like its contract says (monthly on obs_date): a run builds only the months
-- Dagster asks for, and only those rows of the Iceberg table are replaced.
{{ config(
    incremental_strategy='delete+insert',
    unique_key=['origin', 'obs_date'],
) }}

with observations as (
    select
        origin,
        cast(time_hour as date) as obs_date,
        temp,
        wind_speed,
        precip
    from {{ source('weather', 'observations') }}
    where {{ mesh_partition_filter('time_hour') }}
)

select
    observations.origin,
    observations.obs_date,
    airports.name as station_name,
    count(*) as observations,
    avg(observations.temp) as mean_temp_f,
    max(observations.wind_speed) as max_wind_mph,
    sum(observations.precip) as precip_in
from observations
left join {{ source('reference', 'airports') }} as airports
    on airports.faa = observations.origin
group by observations.origin, observations.obs_date, airports.name
