"""The verbs' other names, so that the C prototype's users and scripts keep working (the
contract lists them): each alias maps to its canonical verb (pure data)."""

from __future__ import annotations

ALIASES: dict[str, str] = {
    **dict.fromkeys(
        ("LS", "PS", "LISTAR", "LISTA", "VER", "SHOW", "MOSTRAR", "PROCESOS", "PROCESSES"), "LIST"
    ),
    **dict.fromkeys(
        (
            "RUN",
            "EXEC",
            "LAUNCH",
            "INICIAR",
            "EJECUTAR",
            "LANZAR",
            "CORRER",
            "CREAR",
            "CREATE",
            "BEGIN",
            "EMPEZAR",
        ),
        "START",
    ),
    **dict.fromkeys(
        (
            "KILL",
            "MATAR",
            "DETENER",
            "TERMINAR",
            "END",
            "FINISH",
            "FINALIZAR",
            "CANCEL",
            "CANCELAR",
            "HALT",
            "PARAR",
        ),
        "STOP",
    ),
    **dict.fromkeys(
        ("QUIT", "BYE", "SALIR", "ADIOS", "CLOSE", "CERRAR", "DISCONNECT", "DESCONECTAR"), "EXIT"
    ),
}
