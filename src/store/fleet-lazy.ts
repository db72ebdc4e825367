// Fleet mode's drivers (postgres and ioredis: ~14 MB RSS in an idle gateway) load only when fleet
// mode is on (AAM_DATABASE_URL + AAM_REDIS_URL) or a fleet command runs: code that an embedded
// gateway also runs reaches them only through fleetDrivers(). test/idle-modules.test.ts fails if
// an embedded gateway loads them again.

export { fleetEnv, type FleetEnv } from './fleet-env.ts';

/** The modules that open connections to the fleet store, imported on first use. */
export async function fleetDrivers() {
  const [fleet, status, pg] = await Promise.all([import('./fleet.ts'), import('./fleet-status.ts'), import('./postgres.ts')]);
  return {
    openFleet: fleet.openFleet, startHeartbeat: status.startHeartbeat, readFleetStatus: status.readFleetStatus, formatFleetStatus: status.formatFleetStatus,
    connectPostgres: pg.connectPostgres, connectionError: pg.connectionError, migrate: pg.migrate, requireSchema: pg.requireSchema, SCHEMA_VERSION: pg.SCHEMA_VERSION,
  };
}
