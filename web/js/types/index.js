// Templates of custom object types: one import per type.
import './poll.js';
