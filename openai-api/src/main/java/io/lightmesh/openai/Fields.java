package io.lightmesh.openai;

import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

import java.math.BigDecimal;
import java.math.BigInteger;

/** Typed reads of request fields: absent or null gives null, a wrong type or range is a 400 naming the parameter. */
final class Fields {
    private Fields() {}

    static Object raw(JsonObject o, String key) { return o.getValue(key); }

    static String string(JsonObject o, String key, String param) {
        Object v = o.getValue(key);
        if (v == null) return null;
        if (!(v instanceof String s)) throw ApiError.wrongType(param, "a string", v);
        return s;
    }

    static String requiredString(JsonObject o, String key, String param) {
        String s = string(o, key, param);
        if (s == null) throw ApiError.invalid(param, "Missing required parameter: '" + param + "'.");
        return s;
    }

    static Boolean bool(JsonObject o, String key, String param) {
        Object v = o.getValue(key);
        if (v == null) return null;
        if (!(v instanceof Boolean b)) throw ApiError.wrongType(param, "a boolean", v);
        return b;
    }

    static Double number(JsonObject o, String key, String param, double min, double max) {
        Object v = o.getValue(key);
        if (v == null) return null;
        if (!(v instanceof Number n)) throw ApiError.wrongType(param, "a number", v);
        double d = n.doubleValue();
        if (!(d >= min)) throw ApiError.invalid(param, "Invalid '" + param + "': expected a value >= " + fmt(min) + ", but got " + n + " instead.");
        if (!(d <= max)) throw ApiError.invalid(param, "Invalid '" + param + "': expected a value <= " + fmt(max) + ", but got " + n + " instead.");
        return d;
    }

    static Long integer(JsonObject o, String key, String param, long min, long max) {
        Object v = o.getValue(key);
        if (v == null) return null;
        if (!(v instanceof Number n)) throw ApiError.wrongType(param, "an integer", v);
        long l;
        if (n instanceof Double || n instanceof Float || n instanceof BigDecimal) {
            double d = n.doubleValue();
            if (d != Math.rint(d) || Double.isInfinite(d)) throw ApiError.wrongType(param, "an integer", "a decimal");
            l = (long) d;
        } else if (n instanceof BigInteger b) {
            if (b.bitLength() > 63) throw ApiError.invalid(param, "Invalid '" + param + "': " + b + " is out of range.");
            l = b.longValue();
        } else {
            l = n.longValue();
        }
        if (l < min) throw ApiError.invalid(param, "Invalid '" + param + "': expected a value >= " + min + ", but got " + l + " instead.");
        if (l > max) throw ApiError.invalid(param, "Invalid '" + param + "': expected a value <= " + max + ", but got " + l + " instead.");
        return l;
    }

    static JsonArray array(JsonObject o, String key, String param) {
        Object v = o.getValue(key);
        if (v == null) return null;
        if (!(v instanceof JsonArray a)) throw ApiError.wrongType(param, "an array", v);
        return a;
    }

    static JsonObject object(JsonObject o, String key, String param) {
        Object v = o.getValue(key);
        if (v == null) return null;
        if (!(v instanceof JsonObject j)) throw ApiError.wrongType(param, "an object", v);
        return j;
    }

    /** Element i of an array, which must be an object. */
    static JsonObject objectAt(JsonArray a, int i, String param) {
        Object v = a.getValue(i);
        if (!(v instanceof JsonObject j)) throw ApiError.wrongType(param, "an object", v);
        return j;
    }

    private static String fmt(double d) { return d == Math.rint(d) ? Long.toString((long) d) : Double.toString(d); }
}
