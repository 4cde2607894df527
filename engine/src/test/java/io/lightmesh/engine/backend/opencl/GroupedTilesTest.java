package io.lightmesh.engine.backend.opencl;

import org.junit.jupiter.api.Test;

import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The grouped experts' table: row tiles of at most 128 rows per group, none for empty groups, then the indices. */
class GroupedTilesTest {
    @Test
    void groupsAreCutIntoTilesOfAtMost128Rows() {
        int rows = 300;
        int[] tokenRow = new int[rows], pairIndex = new int[rows];
        for (int i = 0; i < rows; i++) {
            tokenRow[i] = i / 2;
            pairIndex[i] = rows - 1 - i;
        }
        // slot 5: rows 0..0 (one row), slot 2: none, slot 7: rows 1..257 (257 rows: 128 + 128 + 1), slot 0: 258..299
        GroupedTiles t = GroupedTiles.of(4, new int[]{5, 2, 7, 0}, new int[]{0, 1, 1, 258}, new int[]{1, 0, 257, 42},
                tokenRow, pairIndex, rows);
        assertEquals(5, t.tiles());
        assertArrayEquals(new int[]{5, 0, 1, 7, 1, 128, 7, 129, 128, 7, 257, 1, 0, 258, 42},
                Arrays.copyOf(t.table(), 15));
        assertEquals(15, t.tokenOffset());
        assertEquals(15 + rows, t.pairOffset());
        assertArrayEquals(tokenRow, Arrays.copyOfRange(t.table(), t.tokenOffset(), t.tokenOffset() + rows));
        assertArrayEquals(pairIndex, Arrays.copyOfRange(t.table(), t.pairOffset(), t.pairOffset() + rows));
    }

    @Test
    void noRowsNoTiles() {
        GroupedTiles t = GroupedTiles.of(2, new int[]{0, 1}, new int[]{0, 0}, new int[]{0, 0}, new int[0], new int[0], 0);
        assertEquals(0, t.tiles());
        assertEquals(0, t.table().length);
    }

    @Test
    void groupsOutsideTheRowsAreRejected() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> GroupedTiles.of(1,
                new int[]{0}, new int[]{3}, new int[]{2}, new int[4], new int[4], 4));
        assertEquals("group 0: rows 3 + 2 outside 0..4", e.getMessage());
    }
}
